"""proc.run runs real processes: argument lists, captured output, a timeout that kills the whole
process group, and output that never carries secrets."""

from __future__ import annotations

import os
import sys
import textwrap
import time

import psutil
import pytest

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
    # a sudoers line to add is advice, not a secret
    line = "deploy ALL=(root) NOPASSWD: /usr/bin/systemctl reload gunicorn.service"
    assert redact(line) == line


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


# -- deadlines on reading, output cap ------------------------------------------------------
def _kill_pid_in(text: str) -> None:
    """Stop the daemon a test command left behind (its pid is the last line it printed)."""
    try:
        os.kill(int(text.strip().splitlines()[-1]), 9)
    except (ValueError, IndexError, ProcessLookupError):
        pass


def test_a_descendant_holding_the_pipe_cannot_outlive_the_deadline():
    # the command exits at once; the daemon it leaves (own session, so killpg cannot reach
    # it) keeps stdout open for 8 s. run() must return at the 1 s deadline, and report the
    # command's own result: it succeeded, it did not time out.
    started = time.monotonic()
    result = run(["sh", "-c", "setsid sleep 8 & echo started; echo $!"], timeout=1)
    elapsed = time.monotonic() - started
    _kill_pid_in(result.stdout)
    assert result.stdout.splitlines()[0] == "started"
    assert result.ok and not result.timed_out and result.returncode == 0
    assert elapsed < 4, f"run() waited {elapsed:.1f} s for a daemon's pipe"
    assert "kept its output open" in result.stderr


def test_reading_stops_a_short_grace_after_the_command_exited():
    # no timeout at all: once sh has exited, a daemon holding the pipe is not waited for
    started = time.monotonic()
    result = run(["sh", "-c", "setsid sleep 30 & echo $!; echo to-stderr >&2"], timeout=None)
    elapsed = time.monotonic() - started
    _kill_pid_in(result.stdout)
    assert result.ok and result.stderr.startswith("to-stderr")
    assert elapsed < 15, f"run() waited {elapsed:.1f} s for a daemon's pipe"


def test_a_command_that_closes_its_output_still_times_out():
    result = run(
        [sys.executable, "-c", "import os, time; os.close(1); os.close(2); time.sleep(30)"],
        timeout=1,
    )
    assert result.timed_out and not result.ok


def test_captured_output_is_capped_in_memory_keeping_the_tail():
    script = (
        "import sys\nfor i in range(200_000): print(f'line {i}')\nprint('err', file=sys.stderr)"
    )
    result = run([sys.executable, "-c", script], output_limit=10_000)
    assert result.ok
    assert result.stdout.startswith("[... output cut, last 10000 bytes kept ...]\n")
    assert result.stdout.endswith("line 199999\n")
    assert len(result.stdout.encode()) < 10_100
    assert result.stderr == "err\n"


def test_large_input_and_output_do_not_deadlock():
    data = "x" * 300_000 + "\n"
    result = run(
        [sys.executable, "-c", "import sys; d = sys.stdin.read(); print(len(d)); print(d)"],
        input=data,
        timeout=30,
    )
    assert result.ok and result.stdout.splitlines()[0] == str(len(data))


def test_output_is_text_with_newlines_normalised():
    result = run([sys.executable, "-c", "import sys; sys.stdout.buffer.write(b'a\\r\\nb\\xff\\n')"])
    assert result.stdout == "a\nb\ufffd\n"


# -- redaction: the shapes secrets take in real output ---------------------------------------
@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("psql: connecting with password=hunter22x host=db", "hunter22x"),
        ("DB_PASS=Tr0ub4dor in the environment", "Tr0ub4dor"),
        ("mysqldump --password s3cretpw --user app", "s3cretpw"),
        ("mysqldump --password=s3cretpw --user app", "s3cretpw"),
        ("> Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def", "eyJhbGciOiJIUzI1NiJ9.abc.def"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('SECRET_KEY = "django-insecure-abc def"', "django-insecure-abc def"),
        ("SECRET_KEY = 'django-insecure-xyz'", "django-insecure-xyz"),
        ("GET /hook?token=tok123abc&x=1", "tok123abc"),
        ('{"password": "json-pw-1"}', "json-pw-1"),
        ("cloning https://u:pa/ss@h.example/repo.git", "pa/ss"),
        ("PGPASSWORD=pg-pw-42 psql -h db", "pg-pw-42"),
        ("curl --api-key=ak-123456 https://x", "ak-123456"),
    ],
)
def test_redact_common_secret_shapes(text, secret):
    out = redact(text)
    assert secret not in out, out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "tests passed=3 failed=0",
        "tokenizer=fast",
        "see https://example.com/a@b",
        "Authorization header missing",
        "password reset link sent",
    ],
)
def test_redact_leaves_ordinary_text(text):
    assert redact(text) == text


def test_the_projects_own_secrets_are_redacted_by_value(settings, monkeypatch):
    settings.SECRET_KEY = "k3y-" + "x" * 40
    monkeypatch.setitem(settings.DATABASES["default"], "PASSWORD", "dbpw-77")
    settings.ZERODEPLOY = {"WEBHOOK_SECRET": "hook-secret-99", "HEALTHZ_TOKEN": "probe-token-55"}
    text = f"{settings.SECRET_KEY} dbpw-77 hook-secret-99 probe-token-55 plain"
    assert redact(text) == "*** *** *** *** plain"
    result = run([sys.executable, "-c", f"print({text!r})"])
    assert result.output.strip() == "*** *** *** *** plain"


def test_a_missing_working_directory_is_not_a_missing_command(tmp_path):
    result = proc.run(["true"], cwd=tmp_path / "gone")
    assert not result.ok
    assert "working directory" in result.stderr and "command not found" not in result.stderr
    assert str(tmp_path / "gone") in result.stderr
    (tmp_path / "file").write_text("")
    assert "Not a directory" in proc.run(["true"], cwd=tmp_path / "file").stderr
    missing = proc.run(["no-such-command-zerodeploy"], cwd=tmp_path)
    assert missing.returncode == 127 and "command not found" in missing.stderr
