"""proc.run runs real processes: argument lists, captured output, a timeout that kills the whole
process group, and output that never carries secrets."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import psutil

from django_zerodeploy import proc
from django_zerodeploy.proc import ProcResult, python_env, redact, run, tail


def test_run_captures_output_and_exit_code(tmp_path):
    script = "import os, sys; print('out', os.getcwd()); print('err', file=sys.stderr); sys.exit(3)"
    result = run([sys.executable, "-c", script], cwd=tmp_path)
    assert result.returncode == 3 and not result.ok and not result.timed_out
    assert result.stdout.strip() == f"out {tmp_path}"
    assert result.stderr.strip() == "err"
    assert result.output == f"out {tmp_path}\n\nerr\n"
    assert result.duration > 0
    assert result.args == [sys.executable, "-c", script]


def test_run_ok_env_input_and_paths(tmp_path):
    script = "import os, sys; print(os.environ['ZD_VALUE'], sys.stdin.read().upper())"
    result = run(
        [sys.executable, "-c", script],
        env={**os.environ, "ZD_VALUE": "from-env"},
        input="typed in",
    )
    assert result.ok and result.stdout.strip() == "from-env TYPED IN"
    # os.PathLike arguments are accepted and passed as plain strings
    result = run(["ls", tmp_path])
    assert result.ok and result.args == ["ls", str(tmp_path)]


def test_arguments_are_never_interpreted_by_a_shell(tmp_path):
    marker = tmp_path / "created"
    result = run(["echo", f"; touch {marker}", "$(id)", "`id`"])
    assert result.ok
    assert result.stdout.strip() == f"; touch {marker} $(id) `id`"
    assert not marker.exists()


def test_stdin_is_closed_when_no_input_is_given():
    result = run([sys.executable, "-c", "import sys; print(repr(sys.stdin.read()))"], timeout=20)
    assert result.ok and result.stdout.strip() == "''"


def test_missing_and_non_executable_commands(tmp_path):
    missing = run(["zerodeploy-no-such-command", "--version"])
    assert missing.returncode == 127 and not missing.ok
    assert "zerodeploy-no-such-command: command not found" in missing.stderr
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    denied = run([script])
    assert denied.returncode == 126 and "Permission denied" in denied.stderr


def test_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        print("started", flush=True)
        time.sleep(120)
        """
    )
    result = run([sys.executable, "-c", script], timeout=3)
    assert result.timed_out and not result.ok
    assert "started" in result.stdout
    assert "[timed out after 3 s and was killed]" in result.stderr
    grandchild = int(pid_file.read_text())
    assert _gone_within(grandchild, 30), "the grandchild outlived the timeout"


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


def test_each_run_gets_its_own_session():
    result = run([sys.executable, "-c", "import os; print(os.getsid(0))"])
    assert result.ok and int(result.stdout) != os.getsid(0)


# -- redaction ------------------------------------------------------------------------------
def test_redact_url_credentials():
    text = "fatal: unable to access 'https://deploy:ghp_abc123@github.com/acme/site.git/'"
    assert redact(text) == "fatal: unable to access 'https://***@github.com/acme/site.git/'"
    assert redact("git+ssh://git@host/repo") == "git+ssh://***@host/repo"
    assert redact("see https://example.com/a@b") == "see https://example.com/a@b"


def test_redact_secret_assignments():
    text = (
        "PIP_INDEX_URL=https://user:pw@pypi.example/simple\n"
        "DEPLOY_TOKEN: abcdef123\n"
        "DB_PASSWORD = hunter22\n"
        "AWS_SECRET_ACCESS_KEY=AKIAXYZ\n"
        "DEBUG=1"
    )
    out = redact(text)
    for secret in ("user:pw", "abcdef123", "hunter22", "AKIAXYZ"):
        assert secret not in out
    assert "PIP_INDEX_URL=***" in out and "DEPLOY_TOKEN: ***" in out
    assert "DB_PASSWORD = ***" in out and "DEBUG=1" in out


def test_redact_values_of_secret_environment_variables(monkeypatch):
    monkeypatch.setenv("ZD_TEST_API_KEY", "s3cr3t-value-42")
    monkeypatch.setenv("ZD_TEST_SHORT_TOKEN", "abc")  # too short to scrub everywhere
    out = redact("pip said: s3cr3t-value-42 was refused; abc is fine")
    assert out == "pip said: *** was refused; abc is fine"
    assert redact("extra one here", extra=["one"]) == "extra *** here"


def test_result_output_and_command_are_redacted(monkeypatch):
    monkeypatch.setenv("ZD_TEST_PASSWORD", "do-not-log-me")
    script = "print('https://bob:do-not-log-me@git.example/x.git')"
    result = run([sys.executable, "-c", script, "https://bob:pw@host/"])
    assert result.ok
    assert "do-not-log-me" in result.stdout  # the raw capture stays for the caller's own use
    assert "do-not-log-me" not in result.output and "bob" not in result.output
    assert "bob:pw" not in result.command and "https://***@host/" in result.command
    assert "zz-secret" not in repr(ProcResult(["x"], 0, extra_secrets=["zz-secret"]))


# -- tail ----------------------------------------------------------------------------------
def test_tail_keeps_short_text():
    assert tail("short", 100) == "short"
    assert tail("", 10) == ""


def test_tail_keeps_the_last_bytes_and_says_so():
    text = "".join(f"line {i}\n" for i in range(10_000))
    cut = tail(text, 1000)
    assert cut.startswith("[... output cut, last 1000 bytes kept ...]\n")
    assert cut.endswith("line 9999\n")
    assert len(cut.split("\n", 1)[1].encode()) <= 1000


def test_tail_never_splits_a_character_into_garbage():
    cut = tail("é" * 1000, 101)  # 2 bytes each: the cut lands inside one
    body = cut.split("\n", 1)[1]
    assert set(body) == {"é"} and len(body) == 50


def test_last_lines():
    result = ProcResult(["x"], 1, stdout="\n".join(str(i) for i in range(40)) + "\n\n")
    assert result.last_lines(3) == "37\n38\n39"


# -- python_env -------------------------------------------------------------------------------
def test_python_env_puts_the_tree_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", f"/a{os.pathsep}/b")
    monkeypatch.setenv("PYTHONSTARTUP", "/home/someone/.pythonrc")
    env = python_env(tmp_path, {"DJANGO_SETTINGS_MODULE": "x.settings"})
    assert env["PYTHONPATH"].split(os.pathsep) == [str(tmp_path), "/a", "/b"]
    assert "PYTHONSTARTUP" not in env and env["DJANGO_SETTINGS_MODULE"] == "x.settings"
    monkeypatch.delenv("PYTHONPATH")
    assert python_env(tmp_path)["PYTHONPATH"] == str(tmp_path)
    # a subprocess run with it imports from that tree first
    (tmp_path / "zd_probe_module.py").write_text("WHERE = 'tree'\n")
    result = proc.run(
        [sys.executable, "-c", "import zd_probe_module as m; print(m.WHERE)"],
        env=python_env(tmp_path),
    )
    assert result.ok and result.stdout.strip() == "tree"
