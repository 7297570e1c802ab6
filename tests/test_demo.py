"""The README's first command, shrunk: the demo writes its report, movie and lineage."""

from instatrack.demo import run_demo


def test_demo_writes_report_and_pictures(tmp_path):
    report = run_demo(tmp_path / "demo", steps=2, frames=4, size=(48, 56), progress=False)
    for name in ("report.md", "overlay.gif", "lineage.png", "run/weights.pt", "run/curves.png"):
        assert (tmp_path / "demo" / name).is_file(), name
    assert "| SEG |" in report and "| TRA |" in report and "| divisions found |" in report
