"""The command line as a user runs it: synth -> train -> track -> evaluate, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from instatrack.cli import main

TINY = ["--set", "crop=48,48", "--set", "levels=3", "--set", "filters=8", "--set", "clip_len=2",
        "--set", "log_every=1", "--set", "ckpt_every=2", "--steps", "2", "--quiet"]


def test_help_does_not_import_torch():
    code = ("import sys; from instatrack.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_python_dash_m_runs_the_command():
    out = subprocess.run([sys.executable, "-m", "instatrack", "--version"], check=True,
                         capture_output=True, text=True).stdout
    assert out.strip()[0].isdigit()
    bad = subprocess.run([sys.executable, "-m", "instatrack", "evaluate", "--gt", "/no/such",
                          "--res", "/no/such"], capture_output=True, text=True)
    assert bad.returncode != 0 and "/no/such" in bad.stderr


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    assert main(["synth", str(root / "data"), "--frames", "5", "--size", "48", "56"]) == 0
    assert main(["train", "--data", str(root / "data"), "--out", str(root / "run"), *TINY]) == 0
    return root


def test_track_then_evaluate(workflow, capsys):
    root = workflow
    res = root / "data" / "01_RES"
    code = main(["track", "--model", str(root / "run"), "--input", str(root / "data" / "01"),
                 "--output", str(res), "--quiet", "--tables", "--movie", str(root / "m.gif"),
                 "--lineage", str(root / "lineage.png"), "--set", "cluster_min_cluster_size=30",
                 "--weights", "last.pt"])
    assert code == 0
    assert sorted(p.name for p in res.glob("mask*.tif")) == [f"mask{t:03d}.tif" for t in range(5)]
    for name in ("res_track.txt", "tracks.csv"):
        assert (res / name).is_file()
    assert (root / "m.gif").is_file() and (root / "lineage.png").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--gt", str(root / "data" / "01_GT"), "--res", str(res),
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert all(0 <= scores[k] <= 1 for k in ("SEG", "TRA", "DET"))
    assert all(isinstance(scores[k], int) for k in ("FN", "FP", "NS", "ED", "EA", "EC"))


def test_track_says_at_which_size_it_ran(workflow, capsys):
    """Told the objects are twice the training size, the frames run at half scale, and
    the last line says so (as Cellpose prints the diameter it used)."""
    from instatrack.data.rescale import diameter
    from instatrack.runs import Run

    root = workflow
    size = 2 * diameter(Run.open(root / "run").config.instance_area[1])
    assert main(["track", "--model", str(root / "run"), "--input", str(root / "data" / "01"),
                 "--output", str(root / "sized"), "--quiet", "--object-size", f"{size}"]) == 0
    assert capsys.readouterr().out.rstrip().endswith(
        f"(objects ~{size:.0f} px: frames resized x0.5 for the model)")
    assert main(["track", "--model", str(root / "run"), "--input", str(root / "data" / "01"),
                 "--output", str(root / "plain"), "--quiet"]) == 0
    assert "resized" not in capsys.readouterr().out


def test_resume_continues_to_more_steps(workflow):
    root = workflow
    assert main(["train", "--resume", str(root / "run"), "--steps", "3", "--quiet"]) == 0
    rows = (root / "run" / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1.0", "2.0", "3.0"]


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("instatrack"), err
    for word in words:
        assert word in err


def test_errors_are_one_line(workflow, tmp_path, capsys):
    root = workflow
    _one_line_error(capsys, ["evaluate", "--gt", str(tmp_path / "nope"), "--res", str(tmp_path)],
                    "nope")
    _one_line_error(capsys, ["track", "--model", str(tmp_path), "--input", str(tmp_path),
                             "--output", str(tmp_path / "o")], "config.json")
    _one_line_error(capsys, ["train", "--data", str(tmp_path / "missing"), "--out",
                             str(tmp_path / "r")], "missing")
    assert not (tmp_path / "r").exists()
    _one_line_error(capsys, ["track", "--model", str(root / "run"), "--input", str(tmp_path),
                             "--output", str(tmp_path / "o"), "--set", "nonsense=1"], "nonsense")
    # a setting that shaped the network cannot change on the trained run; a bad value is named
    for item, word in (("levels=4", "levels: fixed"),
                       ("division_dilation=-3", "division_dilation")):
        _one_line_error(capsys, ["track", "--model", str(root / "run"), "--input", str(tmp_path),
                                 "--output", str(tmp_path / "o"), "--set", item], word)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "t000.tif").write_bytes(b"garbage")
    _one_line_error(capsys, ["track", "--model", str(root / "run"), "--input", str(bad),
                             "--output", str(tmp_path / "out"), "--quiet"], "t000.tif")
    _one_line_error(capsys, ["track", "--model", str(root / "run"), "--method",
                             "spatial-embedding", "--input", str(bad), "--output",
                             str(tmp_path / "out")], "cosine-hourglass")
