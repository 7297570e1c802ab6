"""One module per paper, each exposing a :class:`~instatrack.methods.base.Method`.

:data:`REGISTRY` is the one list of method names (the CLI's ``--method``
choices come from it); a new method is one new module here plus one line in
it. Methods are imported lazily by name so that the CLI stays fast (this
module imports no torch).
"""

from __future__ import annotations

import importlib

from instatrack.errors import ConfigError

#: ``--method`` name -> "module:ClassName"
REGISTRY = {
    "cosine-hourglass": "instatrack.methods.cosine_hourglass:CosineHourglass",
    "spatial-embedding": "instatrack.methods.spatial_embedding:SpatialEmbedding",
    "recurrent-instance": "instatrack.methods.recurrent_instance:RecurrentInstance",
    "spatial-propagation": "instatrack.methods.spatial_propagation:SpatialPropagation",
}

#: the method used when none is named
DEFAULT_METHOD = "cosine-hourglass"


def get_method(name: str):
    """The Method class registered as ``name``."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}")
    module_name, _, class_name = REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)
