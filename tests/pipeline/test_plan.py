"""The dry run and the deploy lock: a dry run never takes it, and beside a running deploy it
neither blocks nor fetches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_zerodeploy import exit_codes
from django_zerodeploy.pipeline.lock import DeployLock
from tests.support.site import git


# -- the dry run and the deploy lock --------------------------------------------------------------
@pytest.mark.integration
def test_a_dry_run_never_takes_the_deploy_lock(site, gunicorn):
    """A real ``deploy --dry-run`` on a real checkout served by a real Gunicorn: it fetches
    (the plan names the new release) and never even creates the lock file a deploy takes."""
    v2 = site.commit_release("v2")
    lock_file = site.runtime / "deploy.lock"
    assert not lock_file.exists()
    ran = site.manage("deploy", "--dry-run", "--json", check=False, timeout=300)
    assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
    assert json.loads(ran.stdout)["target_sha"] == v2  # fetched
    assert not lock_file.exists()


@pytest.mark.integration
def test_a_dry_run_beside_a_running_deploy_neither_blocks_nor_fetches(site, gunicorn):
    v1 = site.server_head()
    site.commit_release("v2")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; "
            "from django_zerodeploy.pipeline.lock import DeployLock; "
            "DeployLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)",
            str(site.runtime / "deploy.lock"),
        ],
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        ran = site.manage("deploy", "--dry-run", "--json", check=False, timeout=120)
        # a running deploy is only a note for the command (docs/deploy.md); the plan says 4
        assert ran.returncode == exit_codes.OK, ran.stdout + ran.stderr
        shown = json.loads(ran.stdout)
        assert shown["exit_code"] == exit_codes.LOCKED
        assert any(f"pid {holder.pid}" in n and "(no fetch)" in n for n in shown["notes"])
        # the remote-tracking ref is where the last fetch left it: nothing raced the deploy
        assert git(site.server, "rev-parse", "origin/main") == v1
        assert DeployLock(site.runtime / "deploy.lock").held_by().pid == holder.pid  # untouched
        assert holder.poll() is None
    finally:
        holder.kill()
        holder.wait()
