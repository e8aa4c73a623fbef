"""The release family: requirement files and the files they include."""

from __future__ import annotations

from django_zerodeploy.pipeline.steps.release import requirement_files


def test_requirement_files_follow_includes(tmp_path):
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements.txt").write_text("-r requirements/base.txt\nDjango>=4.2\n")
    (tmp_path / "requirements" / "base.txt").write_text("-c constraints.txt\npsutil\n")
    (tmp_path / "requirements" / "constraints.txt").write_text("psutil<99\n")
    assert requirement_files(tmp_path) == [
        "requirements.txt",
        "requirements/base.txt",
        "requirements/constraints.txt",
    ]
