"""The project as the steps run it: the subprocess environment points into the tree."""

from __future__ import annotations

import os
from pathlib import Path

from django_zerodeploy.pipeline.project import OWNER_ENV, Project


def test_subprocess_environment_points_into_the_tree(tmp_path, monkeypatch):
    repo = tmp_path / "live"
    (repo / "src").mkdir(parents=True)
    worktree = tmp_path / "wt"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(repo / "src"), "/opt/other"]))
    project = Project(repo, Path("."), "exampleproject.settings", "/usr/bin/python3")
    env = project.env(worktree)
    paths = env["PYTHONPATH"].split(os.pathsep)
    assert paths[0] == str(worktree)
    assert str(worktree / "src") in paths and str(repo / "src") not in paths
    assert "/opt/other" in paths
    assert env["DJANGO_SETTINGS_MODULE"] == "exampleproject.settings"
    assert env[OWNER_ENV].endswith(f":{os.getpid()}")
