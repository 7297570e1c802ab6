"""instatrack: find every object instance in images and videos and follow it through time.

Quick start::

    import instatrack
    model = instatrack.load("runs/my_run")   # or a shipped model: instatrack.load("nuclei-se")
    result = model.track(frames)          # frames: iterable of 2D arrays
    result.labels, result.graph           # label movie, networkx.DiGraph of tracks

Heavy modules (torch, the methods) are imported lazily so that importing the
package and ``instatrack --help`` stay fast.
"""

from instatrack.errors import ConfigError, DataError, InstatrackError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DataError", "InstatrackError", "load", "__version__"]


def load(model, device=None, overrides=(), weights="weights.pt", object_size=None):
    """Load a trained run folder (config + weights), or a pretrained model shipped with
    instatrack by its name (``instatrack models``), as a :class:`instatrack.api.Predictor`.

    See :func:`instatrack.api.load` for ``overrides``, ``weights`` and ``object_size``.
    """
    from instatrack.api import load as _load

    return _load(model, device=device, overrides=overrides, weights=weights,
                 object_size=object_size)
