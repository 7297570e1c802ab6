"""The README's first command, shrunk: the demo writes its report, movie and lineage."""

from instatrack import pretrained
from instatrack.cli import main
from instatrack.demo import DEMO_MODEL, run_demo

FILES = ("report.md", "overlay.gif", "lineage.png", "run/weights.pt", "run/curves.png")


def test_demo_from_scratch_writes_report_and_pictures(tmp_path):
    report = run_demo(tmp_path / "demo", model=None, steps=2, frames=4, size=(48, 56),
                      progress=False)
    for name in FILES:
        assert (tmp_path / "demo" / name).is_file(), name
    assert "| SEG |" in report and "| TRA |" in report and "| divisions found |" in report
    assert "trained from scratch for 2 steps" in report
    # which cells it got right and how it got the others wrong, and the table behind it
    rows = {line.split("|")[1].strip(): line for line in report.splitlines()
            if line.startswith("| ")}
    assert {"cells outlined well", "cells cut or merged", "false objects"} <= set(rows)
    assert (tmp_path / "demo" / "test" / "01_RES_objects.csv").is_file()


def test_demo_scores_a_model_then_its_fine_tune(tmp_path, tiny_cosine_run):
    report = run_demo(tmp_path / "demo", model=tiny_cosine_run / "run", steps=2, frames=4,
                      size=(48, 56), progress=False)
    for name in FILES:
        assert (tmp_path / "demo" / name).is_file(), name
    header = next(line for line in report.splitlines() if line.startswith("| measure"))
    assert "as it comes" in header and "fine-tuned for 2 steps" in header
    assert (tmp_path / "demo" / "test" / "01_RES_shipped" / "res_track.txt").is_file()


def test_demo_starts_from_a_shipped_model_by_default():
    assert DEMO_MODEL in pretrained.names()


def test_demo_refuses_a_model_and_a_method_together(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "d"), "--model", "x", "--method",
                 "spatial-embedding"]) != 0
    assert "give one of them" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
