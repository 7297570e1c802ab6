"""Fault injection on file formats and outputs (issue 17, cases 1, 3, 4, 6-10; issue 18).

Each test breaks one thing a user meets (a missing frame, a stray file, a
killed run, a truncated TIFF, ...) and drives the CLI in-process. User errors
must exit with 2 and one line naming the file or value; whatever was already
written must be left byte for byte as it was. docs/reliability.md lists the
cases with these test names.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from instatrack.cli import main

pytestmark = pytest.mark.faults

SIZE = (48, 56)
TINY = ["--set", "crop=48,48", "--set", "levels=3", "--set", "filters=8", "--steps", "1",
        "--quiet"]


# -- helpers ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A toy run (tests/toy_method.py, registered meanwhile) trained one step on RGB leaves."""
    from instatrack.data.synth import write_cvppp_synthetic
    from instatrack.methods import REGISTRY
    from instatrack.train import train
    from toy_method import ToyConfig

    root = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(REGISTRY, "toy", "toy_method:ToyMethod")
        data = write_cvppp_synthetic(root / "leaves", n=2, size=SIZE)
        config = ToyConfig.build("fast", overrides=["steps=1", "crop=48,48", "val_frames="])
        yield train("toy", data, root / "run", config=config, progress=False)


def rgb_frames(folder: Path, times, compress: bool = False) -> Path:
    """RGB uint8 frames ``tTTT.tif`` for the given frame numbers (synthetic nuclei)."""
    from instatrack.data.synth import generate_cells

    folder.mkdir(parents=True, exist_ok=True)
    times = list(times)
    movie = generate_cells(max(times) + 1, SIZE, seed=3).images
    for t in times:
        grey = (movie[t] / max(int(movie.max()), 1) * 255).astype(np.uint8)
        tifffile.imwrite(folder / f"t{t:03d}.tif", np.repeat(grey[..., None], 3, -1),
                         photometric="rgb", compression="zlib" if compress else None)
    return folder


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str, *words: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("instatrack") and "error" in lines[0], err
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def digest(folder: Path) -> str:
    """Hash of every file name and content under ``folder`` (hidden files included)."""
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Staging folders and lock files beside outputs."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and (".partial" in p.name or p.name.endswith(".lock")))


def masks(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("mask*.tif"))


def truncate(path: Path, fraction: float = 0.9) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def cut_off_pages(path: Path) -> None:
    """Point the first page past the end of the file, as a real TIFF cut short looks."""
    data = bytearray(path.read_bytes())
    data[4:8] = struct.pack("<I", len(data) + 4096)
    path.write_bytes(bytes(data))


@pytest.fixture
def old_result(run, tmp_path, capsys) -> tuple[Path, str]:
    """A complete CTC result of four frames in ``tmp_path/res`` and its digest."""
    res = tmp_path / "res"
    code, _, err = cli(capsys, "track", "--model", run, "--input",
                       rgb_frames(tmp_path / "old", range(4)), "--output", res, "--quiet",
                       "--tables")
    assert code == 0, err
    assert masks(res) == [f"mask{t:03d}.tif" for t in range(4)]
    return res, digest(res)


# -- case 1: frames are identified by their number
def test_case1_track_keeps_frame_numbers_and_ignores_stray_file(run, tmp_path, capsys):
    frames = rgb_frames(tmp_path / "seq", range(3, 7))
    shutil.copy(frames / "t003.tif", frames / "preview.tif")
    res = tmp_path / "res"
    code, _, err = cli(capsys, "track", "--model", run, "--input", frames, "--output", res,
                       "--quiet")
    assert code == 0, err
    assert masks(res) == ["mask003.tif", "mask004.tif", "mask005.tif", "mask006.tif"]
    warning = err.strip().splitlines()
    assert len(warning) == 1 and "warning" in warning[0] and "preview.tif" in warning[0]


def test_case1_track_refuses_a_missing_frame(run, tmp_path, capsys):
    frames = rgb_frames(tmp_path / "seq", [0, 1, 2, 4])
    code, _, err = cli(capsys, "track", "--model", run, "--input", frames, "--output",
                       tmp_path / "res", "--quiet")
    assert code == 2
    one_line_error(err, "frame 3", "t002.tif", "t004.tif")
    assert not (tmp_path / "res").exists() and not leftovers(tmp_path)


def test_case1_train_refuses_a_missing_frame(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "data"), "--frames", "5", "--size", "32", "32"]) == 0
    (tmp_path / "data" / "01" / "t002.tif").unlink()
    code, _, err = cli(capsys, "train", "--data", tmp_path / "data", "--out", tmp_path / "r",
                       *TINY)
    assert code == 2
    one_line_error(err, "frame 2", "t001.tif", "t003.tif")
    assert not (tmp_path / "r").exists()


def test_case1_video_frames_named_by_number(tmp_path):
    from instatrack.data import open_images
    from instatrack.errors import DataError, DataWarning

    for name in ("00002.jpg", "00003.jpg", "notes.jpg"):
        Image.fromarray(np.full((*SIZE, 3), 60, np.uint8)).save(tmp_path / name)
    with pytest.warns(DataWarning, match="notes.jpg"):
        frames = open_images(tmp_path, video=True)
    assert frames.times == [2, 3] and [p.name for p in frames.paths] == ["00002.jpg", "00003.jpg"]
    assert len(open_images(tmp_path)) == 3  # still images to segment: all of them
    (tmp_path / "notes.jpg").unlink()
    (tmp_path / "00003.jpg").rename(tmp_path / "00004.jpg")
    with pytest.raises(DataError, match=r"frame 3 is missing between 00002\.jpg and 00004\.jpg"):
        open_images(tmp_path, video=True)


def test_case1_exports_use_frame_numbers():
    from instatrack.methods.base import Window
    from instatrack.track.export import graph_to_ctc_table, shift_frames
    from instatrack.track.link import Tracker

    movie = np.zeros((3, 12, 12), np.int32)
    movie[:, 2:6, 2:6] = 1
    tracker = Tracker()
    for t in range(3):
        tracker.push(Window(t, movie[t:t + 1], tracked=True))
    assert graph_to_ctc_table(shift_frames(tracker.graph, 10)) == [(1, 10, 12, 0)]


# -- case 3: an earlier result survives failed, interrupted and concurrent runs
def test_case3_existing_result_is_refused_without_overwrite(run, old_result, tmp_path, capsys):
    res, before = old_result
    code, _, err = cli(capsys, "track", "--model", run, "--input", tmp_path / "old",
                       "--output", res, "--quiet")
    assert code == 2
    one_line_error(err, str(res), "--overwrite")
    code, _, err = cli(capsys, "track", "--model", run, "--input", tmp_path / "old",
                       "--output", tmp_path, "--quiet", "--overwrite")
    assert code == 2
    one_line_error(err, "holds the input")
    assert digest(res) == before and not leftovers(tmp_path)


def test_case3_failed_rerun_keeps_the_previous_result(run, old_result, tmp_path, capsys):
    res, before = old_result
    frames = rgb_frames(tmp_path / "new", range(4), compress=True)
    truncate(frames / "t002.tif")  # header intact: found only when frame 2 is decoded
    code, _, err = cli(capsys, "track", "--model", run, "--input", frames, "--output", res,
                       "--quiet", "--overwrite")
    assert code == 2
    one_line_error(err, "t002.tif", "truncated or corrupt TIFF")
    assert digest(res) == before and not leftovers(tmp_path)


def test_case3_interrupted_rerun_keeps_the_previous_result(run, old_result, tmp_path, capsys,
                                                           monkeypatch):
    from instatrack.track.export import CTCWriter

    res, before = old_result
    write = CTCWriter.write

    def interrupted(self, t, labels):
        if t == 2:
            raise KeyboardInterrupt
        return write(self, t, labels)

    monkeypatch.setattr(CTCWriter, "write", interrupted)
    code, _, err = cli(capsys, "track", "--model", run, "--input", tmp_path / "old",
                       "--output", res, "--quiet", "--overwrite")
    assert code == 130
    assert digest(res) == before and not leftovers(tmp_path)


def test_case3_rerun_with_fewer_frames_replaces_the_whole_result(run, old_result, tmp_path,
                                                                 capsys):
    res, _ = old_result
    frames = rgb_frames(tmp_path / "short", range(2))
    code, _, err = cli(capsys, "track", "--model", run, "--input", frames, "--output", res,
                       "--quiet", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif",
                                                     "res_track.txt"]
    assert not leftovers(tmp_path)


def test_case3_second_run_on_the_same_output_is_refused(run, old_result, tmp_path, capsys):
    res, before = old_result
    lock = tmp_path / ".res.lock"
    lock.write_text(f"{os.getpid()} {os.uname().nodename}\n")  # a live run holds it
    code, _, err = cli(capsys, "track", "--model", run, "--input", tmp_path / "old",
                       "--output", res, "--quiet", "--overwrite")
    assert code == 2
    one_line_error(err, str(res), ".res.lock")
    assert digest(res) == before and lock.is_file()


def test_case3_leftovers_of_a_killed_run_are_cleared(run, old_result, tmp_path, capsys):
    res, _ = old_result
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (tmp_path / ".res.lock").write_text(f"{gone.pid} {os.uname().nodename}\n")
    (tmp_path / ".res.partial").mkdir()
    (tmp_path / ".res.partial" / "mask000.tif").write_bytes(b"half written")
    code, _, err = cli(capsys, "track", "--model", run, "--input", tmp_path / "old",
                       "--output", res, "--quiet", "--overwrite")
    assert code == 0, err
    assert "removed the lock" in err and not leftovers(tmp_path)
    assert masks(res) == [f"mask{t:03d}.tif" for t in range(4)]


def test_case3_result_moved_aside_by_a_killed_run_is_restored(tmp_path):
    from instatrack.data.output import Outputs
    from instatrack.errors import DataWarning

    old = tmp_path / ".res.old"  # killed after moving the old result aside, before moving in
    old.mkdir()
    (old / "res_track.txt").write_text("1 0 0 0\n")
    with pytest.warns(DataWarning, match="restored"), pytest.raises(RuntimeError):
        with Outputs(overwrite=True) as outputs:
            outputs.folder(tmp_path / "res")
            raise RuntimeError("this run fails too")
    assert (tmp_path / "res" / "res_track.txt").read_text() == "1 0 0 0\n"
    assert not leftovers(tmp_path) and not old.exists()


def test_case3_segment_and_pictures_are_replaced_only_on_success(run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(np.full((*SIZE, 3), 90, np.uint8)).save(photos / f"{name}.png")
    out = tmp_path / "labels"
    assert cli(capsys, "segment", "--model", run, "--input", photos, "--output", out,
               "--quiet")[0] == 0
    before = digest(out)
    code, _, err = cli(capsys, "segment", "--model", run, "--input", photos, "--output", out,
                       "--quiet")
    assert code == 2 and digest(out) == before
    one_line_error(err, str(out), "--overwrite")
    (photos / "c.png").write_bytes(b"not a png")
    code, _, err = cli(capsys, "segment", "--model", run, "--input", photos, "--output", out,
                       "--quiet", "--overwrite")
    assert code == 2 and digest(out) == before and not leftovers(tmp_path)
    one_line_error(err, "c.png")
    lineage = tmp_path / "lineage.png"
    lineage.write_bytes(b"an earlier picture")
    code, _, err = cli(capsys, "track", "--model", run, "--input",
                       rgb_frames(tmp_path / "seq", range(2)), "--output", tmp_path / "res",
                       "--lineage", lineage, "--quiet")
    assert code == 2 and lineage.read_bytes() == b"an earlier picture"
    one_line_error(err, "lineage.png", "--overwrite")
    assert not (tmp_path / "res").exists()


# -- case 4: synth into a used folder
def test_case4_synth_refuses_a_used_folder_and_replaces_it_only_with_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", str(data), "--frames", "4", "--size", "32", "32"]) == 0
    before = digest(data)
    code, _, err = cli(capsys, "synth", data, "--frames", "2", "--size", "32", "32",
                       "--seed", "1")
    assert code == 2 and digest(data) == before
    one_line_error(err, str(data), "--overwrite")
    code, _, err = cli(capsys, "synth", data, "--frames", "2", "--size", "32", "32",
                       "--seed", "1", "--overwrite")
    assert code == 0, err
    assert sorted(p.name for p in (data / "01").iterdir()) == ["t000.tif", "t001.tif"]
    assert len(list((data / "01_GT" / "TRA").glob("*.tif"))) == 2 and not leftovers(tmp_path)


def test_case4_train_refuses_ground_truth_from_two_runs(tmp_path, capsys):
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["synth", str(old), "--frames", "4", "--size", "32", "32"]) == 0
    assert main(["synth", str(new), "--frames", "2", "--size", "32", "32", "--seed", "1"]) == 0
    shutil.copytree(new, old, dirs_exist_ok=True)  # what synth into a used folder made
    code, _, err = cli(capsys, "train", "--data", old, "--out", tmp_path / "r", *TINY)
    assert code == 2
    one_line_error(err, "man_track002.tif", "man_track.txt")


# -- case 6: one-line errors instead of tracebacks
def test_case6_track_frames_of_different_shapes(run, tmp_path, capsys):
    frames = rgb_frames(tmp_path / "seq", range(3))
    tifffile.imwrite(frames / "t001.tif", np.zeros((40, 40, 3), np.uint8), photometric="rgb")
    code, _, err = cli(capsys, "track", "--model", run, "--input", frames, "--output",
                       tmp_path / "res", "--quiet")
    assert code == 2
    one_line_error(err, "t001.tif", "(40, 40, 3)", "t000.tif")
    assert not (tmp_path / "res").exists()


@pytest.fixture
def ctc_result(tmp_path) -> tuple[Path, Path]:
    """A synthetic GT and a perfect result for it (the GT's own masks)."""
    data = tmp_path / "data"
    assert main(["synth", str(data), "--frames", "3", "--size", "32", "32"]) == 0
    tra, res = data / "01_GT" / "TRA", data / "01_RES"
    res.mkdir()
    for t in range(3):
        shutil.copy(tra / f"man_track{t:03d}.tif", res / f"mask{t:03d}.tif")
    shutil.copy(tra / "man_track.txt", res / "res_track.txt")
    return data / "01_GT", res


@pytest.mark.parametrize("side", ["result", "gt"])
def test_case6_evaluate_truncated_mask(ctc_result, side, capsys):
    gt, res = ctc_result
    broken = res / "mask001.tif" if side == "result" else gt / "TRA" / "man_track001.tif"
    truncate(broken)
    code, _, err = cli(capsys, "evaluate", "--gt", gt, "--res", res)
    assert code == 2
    one_line_error(err, broken.name, "truncated or corrupt TIFF")


def test_case6_output_is_an_existing_file(run, tmp_path, capsys):
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    code, _, err = cli(capsys, "track", "--model", run, "--input",
                       rgb_frames(tmp_path / "seq", range(2)), "--output", taken, "--quiet")
    assert code == 2 and taken.read_text() == "keep me"
    one_line_error(err, "results.txt", "is a file")


# -- case 7: messages name the file and the cause
def test_case7_infinite_values_name_the_file(run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    image = np.ones((*SIZE, 3), np.float32)
    image[3, 4, 1] = np.inf
    tifffile.imwrite(photos / "hot.tif", image, photometric="rgb")
    code, _, err = cli(capsys, "segment", "--model", run, "--input", photos, "--output",
                       tmp_path / "out", "--quiet")
    assert code == 2
    one_line_error(err, "hot.tif", "infinite")
    assert not (tmp_path / "out").exists()


def test_case7_3d_stack_has_one_message_everywhere(run, tmp_path, capsys):
    stack = np.zeros((5, *SIZE), np.uint16)
    seq = tmp_path / "seq"
    seq.mkdir()
    tifffile.imwrite(seq / "t000.tif", stack)
    folder = tmp_path / "folder"
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    tifffile.imwrite(folder / "images" / "a.tif", stack)
    tifffile.imwrite(folder / "masks" / "a.tif", np.zeros(SIZE, np.uint16))
    for argv in (["segment", "--model", run, "--input", seq, "--output", tmp_path / "o1"],
                 ["track", "--model", run, "--input", seq, "--output", tmp_path / "o2"],
                 ["train", "--data", folder, "--out", tmp_path / "r", *TINY]):
        code, _, err = cli(capsys, *argv)
        assert code == 2
        one_line_error(err, ".tif: 3D stacks are not supported", "(5, 48, 56)")


def test_case7_truncated_tiff_is_called_so_in_one_line(run, tmp_path, capsys):
    frames = rgb_frames(tmp_path / "seq", range(2))
    cut_off_pages(frames / "t001.tif")
    code, _, err = cli(capsys, "segment", "--model", run, "--input", frames, "--output",
                       tmp_path / "out", "--quiet")
    assert code == 2
    one_line_error(err, "t001.tif", "truncated or corrupt TIFF")  # no tifffile log line


# -- case 8: one track-file parser ---------------------------------------------------------------
def test_case8_train_and_evaluate_read_track_files_alike(ctc_result, tmp_path, capsys):
    gt, res = ctc_result
    track_file = gt / "TRA" / "man_track.txt"
    track_file.write_text(track_file.read_text() + "\n\n")  # trailing blank lines
    code, _, err = cli(capsys, "evaluate", "--gt", gt, "--res", res, "--json")
    assert code == 0, err
    track_file.write_text(track_file.read_text() + "7 0 x 0\n")
    code, _, err = cli(capsys, "evaluate", "--gt", gt, "--res", res)
    assert code == 2
    verdict = one_line_error(err, "man_track.txt", "line")
    code, _, err = cli(capsys, "train", "--data", gt.parent, "--out", tmp_path / "r", *TINY)
    assert code == 2
    assert one_line_error(err).split("error: ")[1] == verdict.split("error: ")[1]


# -- case 9: output files are checked before any work
def test_case9_unsupported_movie_type_is_refused_up_front(run, tmp_path, capsys):
    code, _, err = cli(capsys, "track", "--model", run, "--input",
                       rgb_frames(tmp_path / "seq", range(2)), "--output", tmp_path / "res",
                       "--movie", tmp_path / "x.avi", "--quiet")
    assert code == 2
    one_line_error(err, "x.avi", ".gif")
    assert not (tmp_path / "res").exists() and not list(tmp_path.glob("x.*"))


def test_case9_lineage_in_a_missing_folder_is_refused_up_front(run, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "l.png"
    code, _, err = cli(capsys, "track", "--model", run, "--input",
                       rgb_frames(tmp_path / "seq", range(2)), "--output", tmp_path / "res",
                       "--lineage", target, "--quiet")
    assert code == 2
    one_line_error(err, str(target.parent), "not found")
    assert not (tmp_path / "no").exists() and not (tmp_path / "res").exists()


# -- case 10: segment reads what training reads
def test_case10_segment_reads_a_cvppp_folder_of_rgba_photos(run, tmp_path, capsys):
    from instatrack.data.synth import generate_leaves

    a1 = tmp_path / "A1"
    a1.mkdir()
    leaves = generate_leaves(2, SIZE, seed=4)
    for i in range(2):
        rgba = np.concatenate([leaves.images[i], np.full((*SIZE, 1), 255, np.uint8)], -1)
        Image.fromarray(rgba, "RGBA").save(a1 / f"plant{i + 1:03d}_rgb.png")
        Image.fromarray(leaves.labels[i].astype(np.uint8), "P").save(
            a1 / f"plant{i + 1:03d}_label.png")
    out = tmp_path / "out"
    code, _, err = cli(capsys, "segment", "--model", run, "--input", a1, "--output", out,
                       "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["plant001_rgb.tif", "plant002_rgb.tif"]


def test_case10_channel_mismatch_names_the_file(run, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full(SIZE, 90, np.uint8)).save(photos / "grey.png")
    code, _, err = cli(capsys, "segment", "--model", run, "--input", photos, "--output",
                       tmp_path / "out", "--quiet")
    assert code == 2
    one_line_error(err, "grey.png", "1 channel", "trained on 3")


# -- issue 18: CTC names for any frame count
def test_issue18_to_ctc_names_masks_by_frame_count(tmp_path):
    import networkx as nx

    from instatrack.api import TrackResult

    labels = np.zeros((1001, 2, 2), np.int32)
    labels[0, 0, 0] = 1  # the last frame, 1000, is empty: no node of the graph lies there
    graph = nx.DiGraph()
    graph.add_node(0, t=0, label=1, y=0.0, x=0.0, area=1)
    res = TrackResult(labels, graph).to_ctc(tmp_path / "01_RES")
    assert masks(res) == [f"mask{t:04d}.tif" for t in range(1001)]
    assert (res / "res_track.txt").read_text() == "1 0 0 0\n"
