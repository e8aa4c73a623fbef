"""The suite's own guards. Run on tiny test files in a real pytest subprocess: under CI an
unlisted skip fails the run, a listed one does not, and a hanging test is stopped. And the load
generator's coverage check, against a real HTTP server on loopback: a load that ended before
the operation did is caught even when none of its requests failed."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import FAST_TEST_TIMEOUT
from tests.support.load import Hit, LoadReport
from tests.support.skips import read_allow_list

ROOT = Path(__file__).resolve().parents[1]

TESTS = """
import pytest

def test_passes():
    pass

def test_skips():
    pytest.skip("no frobnicator here")

@pytest.mark.xfail(reason="known to break")
def test_xfails():
    assert False
"""


def run_pytest(tmp_path: Path, allowed: str, *, ci: bool, tests: str = TESTS, ini: str = ""):
    """pytest on ``tests`` with the suite's skip plugin and ``allowed`` as its allow-list."""
    (tmp_path / "test_sample.py").write_text(textwrap.dedent(tests))
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["tests.support.skips"]\n')
    (tmp_path / "allowed.txt").write_text(textwrap.dedent(allowed))
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nskips_allowed = allowed.txt\n{ini}")
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "DJANGO_SETTINGS_MODULE"}}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:django", "-p", "no:cacheprovider", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_under_ci_an_unlisted_skip_or_xfail_fails_the_run_and_is_named(tmp_path):
    ran = run_pytest(tmp_path, "test_sample.py::test_xfails  expected: upstream bug\n", ci=True)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout
    assert "skips not allowed under CI" in ran.stdout
    assert "skipped: test_sample.py::test_skips: no frobnicator here" in ran.stdout
    assert "xfail: test_sample.py::test_xfails" not in ran.stdout  # listed

    ran = run_pytest(tmp_path, "test_sample.py::test_skips  no frobnicator on CI\n", ci=True)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout
    assert "xfail: test_sample.py::test_xfails: known to break" in ran.stdout


def test_under_ci_listed_skips_pass_and_wildcards_match(tmp_path):
    ran = run_pytest(
        tmp_path,
        """\
        # comments and blank lines are ignored

        test_sample.py::test_skips   no frobnicator on CI machines
        test_sample.py::test_x*      the frobnicator bug, upstream #1
        """,
        ci=True,
    )
    assert ran.returncode == pytest.ExitCode.OK, ran.stdout
    assert "1 passed, 1 skipped, 1 xfailed" in ran.stdout


def test_a_skip_at_collection_counts_too(tmp_path):
    module_skip = 'import pytest\npytest.skip("module off", allow_module_level=True)\n'
    ran = run_pytest(tmp_path, "", ci=True, tests=module_skip)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout
    assert "skipped: test_sample.py: module off" in ran.stdout


def test_outside_ci_skips_are_only_reported(tmp_path):
    ran = run_pytest(tmp_path, "", ci=False)
    assert ran.returncode == pytest.ExitCode.OK, ran.stdout
    assert "skips not allowed" not in ran.stdout


def test_an_entry_without_a_reason_is_refused(tmp_path):
    ran = run_pytest(tmp_path, "test_sample.py::test_skips\n", ci=True)
    assert ran.returncode == pytest.ExitCode.USAGE_ERROR, ran.stdout
    assert "allowed.txt:1: 'test_sample.py::test_skips' has no reason" in ran.stdout


def test_the_projects_allow_list_is_valid():
    for entry in read_allow_list(ROOT / "tests" / "skips_allowed.txt"):
        assert entry.reason


def test_a_hanging_test_is_stopped_by_the_timeout(tmp_path):
    hang = "import time\n\ndef test_hangs():\n    time.sleep(60)\n"
    ran = run_pytest(
        tmp_path, "", ci=True, tests=hang, ini="timeout = 2\ntimeout_method = signal\n"
    )
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout
    assert "Timeout (>2.0s)" in ran.stdout


def test_the_suite_sets_a_ceiling_on_every_test(request, pytestconfig):
    assert float(pytestconfig.getini("timeout")) > 0
    marker = request.node.get_closest_marker("timeout")
    assert marker is not None and marker.args == (FAST_TEST_TIMEOUT,)


def test_ci_script_sets_ci_itself():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    exports = [n for n, line in enumerate(lines) if line.startswith("export CI=true")]
    runs = [n for n, line in enumerate(lines) if line.startswith("python3 runtests.py")]
    assert exports and runs and exports[0] < runs[0]


# -- the load generator's coverage assertion -------------------------------------------------------
@pytest.fixture
def http_server():
    """A tiny real HTTP server on loopback that answers 200 to every GET."""

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_load_that_ran_through_the_operation_is_covered(http_server, load_factory):
    load = load_factory(port=http_server, clients=2, max_seconds=60).start()
    with load.operation():
        time.sleep(0.2)
    report = load.stop()
    report.assert_covered()
    began, ended = report.window
    assert any(h.started >= ended for h in report.hits)
    assert any(h.started + h.latency <= began for h in report.hits)


def test_a_load_that_ended_before_the_operation_is_not_covered(http_server, load_factory):
    load = load_factory(port=http_server, clients=2, max_seconds=0.5).start()
    with load.operation():
        time.sleep(1.0)  # the load's own limit ends it inside the operation
    report = load.stop()
    assert report.failed == 0 and report.total > 0  # what a test checking only failures sees
    with pytest.raises(AssertionError, match="ended before the test stopped it"):
        report.assert_covered()


def test_coverage_needs_requests_on_both_sides_of_the_operation():
    hits = [Hit(started=1.0, latency=0.1, status=200, marker="v1")]
    with pytest.raises(AssertionError, match="no request started after the operation ended"):
        LoadReport(hits=hits, window=(2.0, 3.0)).assert_covered()
    with pytest.raises(AssertionError, match="no request completed before the operation began"):
        LoadReport(hits=hits, window=(0.5, 0.9)).assert_covered()
    with pytest.raises(AssertionError, match="no operation was timed"):
        LoadReport(hits=hits).assert_covered()
