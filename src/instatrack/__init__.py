"""instatrack: find every object instance in images and videos and follow it through time.

Quick start::

    import instatrack
    model = instatrack.load("runs/my_run")
    result = model.track(frames)          # frames: iterable of 2D arrays
    result.labels, result.graph           # label movie, networkx.DiGraph of tracks

Heavy modules (torch, the methods) are imported lazily so that importing the
package and ``instatrack --help`` stay fast.
"""

from instatrack.errors import ConfigError, DataError, InstatrackError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "InstatrackError", "load", "__version__"]


def load(run_dir, device=None, overrides=(), weights="weights.pt"):
    """Load a trained run folder (config + weights) as a :class:`instatrack.api.Predictor`.

    See :func:`instatrack.api.load` for ``overrides`` and ``weights``.
    """
    from instatrack.api import load as _load

    return _load(run_dir, device=device, overrides=overrides, weights=weights)
