"""ONNX export and the onnxruntime backend: same network outputs, same labels as torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import instatrack
from instatrack.cli import main
from instatrack.errors import ConfigError, DataError
from scale_runs import cells_image, random_run

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from instatrack.onnx import export_onnx, onnx_predictor  # noqa: E402

METHODS = ("spatial-embedding", "cosine-hourglass")
#: the networks exported: each method, and the cosine-hourglass with its foreground output
NETWORKS = (*((m, ()) for m in METHODS), ("cosine-hourglass", ("foreground_head=true",)))


@pytest.fixture(scope="module", params=NETWORKS, ids=lambda p: "-".join((p[0], *p[1])))
def exported(request, tmp_path_factory):
    run = random_run(tmp_path_factory.mktemp("run"), *request.param)
    path = export_onnx(run, run / "model.onnx")
    torch_predictor = instatrack.load(run, device="cpu")
    # ONNX runs in float32; torch would run cosine-hourglass in bfloat16 on a CPU with its
    # kernels (a few pixels differ), so the comparison is with torch in float32
    method = torch_predictor.method
    method.config = method.config.replace(amp=False)
    return run, torch_predictor, onnx_predictor(torch_predictor, path)


def network_outputs(predictor, frames) -> list[torch.Tensor]:
    """Every float output of the network, frame after frame (state carried over)."""
    outputs, state = [], None
    with torch.inference_mode():
        for frame in frames:
            image = torch.from_numpy(predictor.prepare(frame))[None]
            if predictor.method.name == "spatial-embedding":
                outputs += list(predictor.model(image).values())
            else:
                embeddings, state = predictor.model.step(image, state)
                outputs += embeddings
    return outputs


def test_network_outputs_match_torch(exported):
    _, torch_predictor, ort_predictor = exported
    frames = cells_image((77, 93), seed=1, frames=3)  # odd sizes: padding and cropping
    for a, b in zip(network_outputs(torch_predictor, frames),
                    network_outputs(ort_predictor, frames), strict=True):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) <= 1e-4


def test_tracked_labels_are_identical(exported):
    _, torch_predictor, ort_predictor = exported
    frames = cells_image((64, 80), seed=3, frames=3)
    expected = torch_predictor.track(frames)
    assert expected.labels.max() > 0
    assert np.array_equal(ort_predictor.track(frames).labels, expected.labels)


def test_cli_export_then_track_with_onnxruntime(tmp_path):
    from instatrack.data.synth import write_ctc_synthetic

    run = random_run(tmp_path / "run")
    data = write_ctc_synthetic(tmp_path / "data", frames=3, size=(64, 80), seed=0)
    assert main(["export", "--model", str(run), "--format", "onnx", str(run / "model.onnx")]) == 0
    results = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / backend
        assert main(["track", "--model", str(run), "--input", str(data / "01"), "--output",
                     str(out), "--quiet", "--backend", backend]) == 0
        results[backend] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert results["torch"] == results["onnxruntime"]


def test_tiles_run_on_the_onnx_backend_too(exported):
    from instatrack.tiling import TiledPredictor, instance_agreement

    _, torch_predictor, ort_predictor = exported
    if torch_predictor.method.name != "spatial-embedding":
        pytest.skip("tiles are for the per-frame method")
    image = cells_image((160, 200), seed=5)[0]
    tiled = TiledPredictor(ort_predictor, tile=120)
    agreement = instance_agreement(torch_predictor.segment(image), tiled.segment(image))
    assert agreement["identical"] == agreement["reference"] == agreement["labels"] > 0


def test_missing_file_and_unexportable_methods_are_clear_errors(tmp_path, exported):
    _, torch_predictor, _ = exported
    with pytest.raises(DataError, match="instatrack export"):
        onnx_predictor(torch_predictor, tmp_path / "none.onnx")
    run = random_run(tmp_path / "other", "cosine-hourglass")
    path = export_onnx(run, tmp_path / "hg.onnx")
    if torch_predictor.method.name != "cosine-hourglass":
        with pytest.raises(DataError, match="exported from cosine-hourglass"):
            onnx_predictor(torch_predictor, path)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_torch_export_based_exporter_gives_the_same_network(tmp_path, method):
    pytest.importorskip("onnxscript")
    run = random_run(tmp_path / "run", method)
    torch_predictor = instatrack.load(run, device="cpu")
    ort_predictor = onnx_predictor(torch_predictor, export_onnx(run, tmp_path / "m.onnx",
                                                                dynamo=True))
    frames = cells_image((77, 93), seed=1, frames=2)
    for a, b in zip(network_outputs(torch_predictor, frames),
                    network_outputs(ort_predictor, frames), strict=True):
        assert float((a - b).abs().max()) <= 1e-4


def test_export_refuses_other_methods(tmp_path):
    from instatrack.methods import get_method
    from instatrack.runs import Run

    method_cls = get_method("recurrent-instance")
    config = method_cls.config_cls.build("fast")
    run = Run.create(tmp_path / "run", method_cls, config)
    run.save_weights(method_cls(config).build_model().state_dict())
    with pytest.raises(ConfigError, match="cannot be exported"):
        export_onnx(tmp_path / "run", tmp_path / "x.onnx")
