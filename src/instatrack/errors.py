"""Errors a user can cause and fix.

The CLI prints any :class:`InstatrackError` as one line (no traceback) and exits
non-zero; everything else is a bug and keeps its traceback.
"""


class InstatrackError(Exception):
    """Base class of errors caused by the user's input (files, values, configs)."""


class DataError(InstatrackError, ValueError):
    """A missing, unreadable or inconsistent input file or array.

    The message names the file (or the array) and what is wrong with it.
    """


class ConfigError(InstatrackError, ValueError):
    """An unknown config key or an invalid config value."""


class DataWarning(UserWarning):
    """Input that is used anyway, with a part left out (e.g. a stray file in a sequence folder).

    The CLI prints it as one line ``instatrack COMMAND: warning: ...``.
    """


class MissingExtraError(InstatrackError, ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


def require(module: str, extra: str):
    """Import ``module``, or raise :class:`MissingExtraError` naming ``instatrack[extra]``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"this needs the optional package {module.split('.')[0]!r}: "
                                f"pip install \"instatrack[{extra}]\"") from None
