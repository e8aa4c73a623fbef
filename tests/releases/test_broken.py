"""Each kind of broken release, in the releases layout, with real Gunicorn under load: the broken
release is built beside the one that serves, the deploy exits 1, no request fails, and the
previous release still serves from ROOT/current. A release that fails before the switch never
moves current; one that fails after it (its workers do not boot, or run another release than the commit) is
switched back. One Gunicorn session, one broken release after the other: the failure kinds of
the in-place suite (tests/deploy/test_failures.py) that take a different path here."""

from __future__ import annotations

import pytest

from tests.deploy.test_failures import files_for
from tests.support.releases import (
    deploy_under_load,
    master_cwd,
    serve_from_releases,
    show,
    step_line,
)
from tests.support.site import git

pytestmark = pytest.mark.integration

# (case, the step that fails, whether current had moved and was switched back, message words).
# The URLconf that fails to import is tests/releases/test_deploy.py's broken release.
CASES = [
    ("bad_requirement", "venv", False, "nonexistent-zerodeploy-demo-pkg"),
    ("settings_import_error", "reload", True, "exited before its workers were ready"),
    ("check_error", "reload", True, "fields.E130"),
    ("smoke_5xx", "reload", True, "smoke URL failed: / answered 500"),
    ("verify_mismatch", "reload", True, "run release 000000000000"),
    ("failing_migration", "migrate", False, "notes.0002_tag"),  # last: it leaves 0002 applied
]


def test_each_broken_release_is_never_served(site, tmp_path, gunicorn_factory, load_factory):
    root_dir, root, server = serve_from_releases(site, tmp_path, gunicorn_factory)
    good = root.current()

    for index, (case, failing, switched_back, words) in enumerate(CASES):
        if index:
            git(site.dev, "revert", "--no-edit", "HEAD")  # only this case's breakage
        # the in-place case's environment (an unreachable index) is left out: a new venv
        # installs every requirement, not only the missing one
        files, _env = files_for(case, site)
        broken = site.commit_release(f"broken-{case}", files)
        result, report = deploy_under_load(site, root_dir, server, load_factory)
        print(f"--- {case}\n{result.stdout}")
        assert result.returncode == 1, show(result)
        assert report.failed == 0, (case, report.summary())
        assert report.last_marker == "v1", (case, report.summary())
        assert root.current() == good, case
        assert master_cwd(server) == good.path, case
        assert "failed" in step_line(result.stdout, failing), (case, result.stdout)
        assert words in result.stdout, (case, result.stdout)
        assert ("rollback:switch" in result.stdout) is switched_back, (case, result.stdout)
        assert "Traceback" not in result.stdout, case
        # built beside the serving release, and left there to inspect
        assert broken[:12] in {r.sha12 for r in root.releases()}, case
