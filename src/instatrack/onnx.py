"""ONNX export of the networks, and an onnxruntime backend for inference.

Only the learned part of a network goes into the ONNX graph; what surrounds it
(padding to the network's stride, cropping back, resizing for
``input_scale``, the coordinate grid, clustering) stays the package's own
torch / numpy code, so both backends share every step but the network:

- spatial-embedding: :meth:`BranchedERFNet.decode
  <instatrack.models.erfnet.BranchedERFNet.decode>`, padded image ``(1, C, Y, X)``
  -> raw offsets + log-sigma and seed logits;
- cosine-hourglass: :meth:`StackedHourglass.step_padded
  <instatrack.models.hourglass.StackedHourglass.step_padded>`, one frame plus
  the ConvGRU state of every stack and level as explicit inputs -> the
  embeddings of every stack plus the new state (``state_S_L`` in,
  ``new_state_S_L`` out; zeros before the first frame).

Height and width are dynamic (multiples of the network's stride). The graph's
metadata names the method and the network's shape, and the run folder's
``config.json`` supplies the post-processing, so ``--backend onnxruntime``
needs the run folder and the ``.onnx`` file. ``onnx`` and ``onnxruntime`` are
optional (``pip install "instatrack[onnx]"``) and imported only here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from instatrack.errors import ConfigError, DataError

EXPORTABLE = ("spatial-embedding", "cosine-hourglass")
OPSET = 18


def export_onnx(run_dir: str | Path, out: str | Path, weights: str = "weights.pt",
                dynamo: bool | None = None) -> Path:
    """Write the network of the run in ``run_dir`` as an ONNX file ``out``.

    ``dynamo``: use torch's ``torch.export``-based exporter (needs onnxscript);
    None takes the TorchScript exporter while torch still has it (ten times
    faster here and without the extra dependency), else the new one.
    """
    from instatrack.runs import Run

    onnx = _require("onnx")
    run = Run.resolve(run_dir)
    if run.members:
        raise ConfigError(f"export: {run.path} is an ensemble of {len(run.weight_files)} "
                          f"networks; export one of its trainings")
    method, model = run.load_model("cpu", weights=weights)
    if method.name not in EXPORTABLE:
        raise ConfigError(f"export: {method.name} cannot be exported (only "
                          f"{', '.join(EXPORTABLE)})")
    graph = _graph_module(method.name, model).eval()
    example, names, dynamic = graph.signature(method.config.in_channels)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    _export(graph, example, tmp, names, dynamic, dynamo)
    proto = onnx.load(str(tmp))
    for key, value in {"instatrack_method": method.name, **graph.metadata()}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(proto, str(tmp))
    tmp.replace(out)
    return out


def onnx_predictor(predictor, path: str | Path):
    """A Predictor like ``predictor`` whose network runs in onnxruntime on the CPU.

    ``predictor`` is the torch predictor loaded from the same run folder (it
    supplies the method and its post-processing settings); ``path`` is the
    file written by :func:`export_onnx`.
    """
    from instatrack.api import Predictor

    ort = _require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no ONNX file; write it with 'instatrack export --model RUN "
                        f"--format onnx {path}'")
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own kinds for bad files
        raise DataError(f"{path}: cannot load ({type(err).__name__}: {err})") from None
    meta = session.get_modelmeta().custom_metadata_map
    name = predictor.method.name
    if meta.get("instatrack_method") != name:
        raise DataError(f"{path}: exported from {meta.get('instatrack_method', 'an unknown')} "
                        f"run, but the run folder is {name}")
    model = _ort_model(predictor, _OrtGraph(session), meta)
    return Predictor(predictor.method, model, torch.device("cpu"),
                     object_size=predictor.object_size)


# -- the exported graphs ---------------------------------------------------------
class _ERFNetGraph(torch.nn.Module):
    """``decode`` of a BranchedERFNet: padded image -> raw outputs."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.decode(image)

    def signature(self, channels: int):
        from instatrack.models.erfnet import STRIDE

        example = (torch.randn(1, channels, 4 * STRIDE, 6 * STRIDE),)
        names = (["image"], ["raw", "seed_logits"])
        return example, names, {"image": STRIDE}

    def metadata(self) -> dict:
        return {"instatrack_graph": "erfnet-decode"}


class _HourglassGraph(torch.nn.Module):
    """``step_padded`` of a StackedHourglass with the ConvGRU state flattened."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.levels = net.levels if net.recurrent else 0

    def forward(self, image: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        nested = ([list(state[s * self.levels:(s + 1) * self.levels])
                   for s in range(self.net.stacks)] if self.levels else None)
        outputs, new_state = self.net.step_padded(image, nested)
        flat = [level for stack in new_state for level in stack] if self.levels else []
        return (*outputs, *flat)

    def signature(self, channels: int):
        net = self.net
        m = net.multiple
        filters = net.hourglasses[0].down[0][0].out_channels
        image = torch.randn(1, channels, 2 * m, 3 * m)
        state_names = [f"state_{s}_{k}" for s in range(net.stacks) for k in range(self.levels)]
        states = [torch.randn(1, filters, 2 * m >> k, 3 * m >> k)
                  for _ in range(net.stacks) for k in range(self.levels)]
        names = (["image", *state_names],
                 [f"embedding_{s}" for s in range(net.stacks)]
                 + ["new_" + n for n in state_names])
        dynamic = {"image": m, **{n: m >> int(n.rsplit("_", 1)[1]) for n in state_names}}
        return (image, *states), names, dynamic

    def metadata(self) -> dict:
        net = self.net
        return {"instatrack_graph": "hourglass-step", "stacks": net.stacks,
                "levels": self.levels, "multiple": net.multiple,
                "filters": net.hourglasses[0].down[0][0].out_channels}


def _graph_module(name: str, model) -> torch.nn.Module:
    net = getattr(model, "_orig_mod", model)
    return _ERFNetGraph(net) if name == "spatial-embedding" else _HourglassGraph(net)


def _export(graph, example, path: Path, names, dynamic: dict, dynamo: bool | None) -> None:
    """``torch.onnx.export`` with dynamic height and width: ``dynamic[name]`` is the multiple."""
    inputs, outputs = names
    legacy = dynamo is False or (dynamo is None and _has_torchscript_exporter())
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        if legacy:
            axes = {n: {2: f"{n}_y", 3: f"{n}_x"} for n in inputs}
            torch.onnx.export(graph, example, str(path), input_names=inputs,
                              output_names=outputs, dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)
            return
        _require("onnxscript")
        # every input's height and width are multiples of the image's own dims
        y = torch.export.Dim("y", min=1, max=1 << 12)
        x = torch.export.Dim("x", min=1, max=1 << 12)
        specs = [{2: dynamic[n] * y, 3: dynamic[n] * x} for n in inputs]
        shapes = (specs[0], tuple(specs[1:])) if len(specs) > 1 else (specs[0],)  # (image, *state)
        torch.onnx.export(graph, example, str(path), input_names=inputs, output_names=outputs,
                          dynamic_shapes=shapes, opset_version=OPSET, dynamo=True,
                          verbose=False)


def _has_torchscript_exporter() -> bool:
    try:
        from torch.onnx import utils  # noqa: F401  (the TorchScript exporter)
    except ImportError:
        return False
    return True


# -- onnxruntime in place of the torch network ------------------------------------
class _OrtGraph:
    """Runs an ONNX session on torch tensors: ``graph(*tensors) -> list of tensors``."""

    def __init__(self, session):
        self.session = session
        self.inputs = [i.name for i in session.get_inputs()]

    def __call__(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        feeds = {name: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)
                 for name, t in zip(self.inputs, tensors, strict=True)}
        return [torch.from_numpy(o) for o in self.session.run(None, feeds)]


def _ort_model(predictor, graph: _OrtGraph, meta: dict):
    """The method's network with its learned part replaced by ``graph`` (no weights left)."""
    model = predictor.method.build_model()
    torch_net = getattr(predictor.model, "_orig_mod", predictor.model)
    if meta.get("instatrack_graph") == "erfnet-decode":
        model.encoder = model.embedding_decoder = model.seed_decoder = None
        model.decode = lambda padded: tuple(graph(padded))
    else:
        stacks, levels = int(meta["stacks"]), int(meta["levels"])
        filters = int(meta["filters"])
        model.hourglasses = model.heads = None
        model.background.copy_(torch_net.background.cpu())

        def step_padded(image, state=None):
            if levels and state is None:
                state = [[image.new_zeros((image.shape[0], filters, image.shape[2] >> k,
                                           image.shape[3] >> k)) for k in range(levels)]
                         for _ in range(stacks)]
            flat = [level for stack in state for level in stack] if levels else []
            out = graph(image, *flat)
            new = [out[stacks + s * levels:stacks + (s + 1) * levels] for s in range(stacks)]
            return out[:stacks], (new if levels else [[None] * model.levels] * stacks)

        model.step_padded = step_padded
    return model.eval()


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{module} is not installed; pip install 'instatrack[onnx]'") from None
