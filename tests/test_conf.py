"""Bad ZERODEPLOY settings are system-check errors with an id and a hint, never a traceback;
every key has a documented default, and the docs table is generated from conf.KEYS."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from django_zerodeploy import conf
from django_zerodeploy.checks import require_valid_settings
from django_zerodeploy.conf import KEYS, app_settings, validate
from django_zerodeploy.exit_codes import USAGE, CommandFailure

ROOT = Path(__file__).resolve().parents[1]


def run_zerodeploy_checks() -> list[checks.CheckMessage]:
    """The registered checks, as manage.py check runs them, minus the model checks (which touch
    the database on Django 6), keeping this app's messages."""
    messages = checks.run_checks(tags=[checks.Tags.compatibility])
    return [m for m in messages if (m.id or "").startswith("zerodeploy.")]


def zerodeploy_messages(**config: object) -> list[checks.CheckMessage]:
    with override_settings(ZERODEPLOY=config):
        return run_zerodeploy_checks()


# (ZERODEPLOY, expected id, text in the message, text in the hint)
BAD_CONFIGS = [
    pytest.param({"REMOTES": "origin"}, "zerodeploy.E002", "Unknown ZERODEPLOY key 'REMOTES'", "Did you mean 'REMOTE'?", id="unknown-key"),
    pytest.param({"reload_strategy": "usr2"}, "zerodeploy.E002", "'reload_strategy'", "Did you mean 'RELOAD_STRATEGY'?", id="lowercase-key"),
    pytest.param({"NOTHING_LIKE_IT": 1}, "zerodeploy.E002", "NOTHING_LIKE_IT", "configuration table", id="unknown-key-no-suggestion"),
    pytest.param({"RELOAD_TIMEOUT": "60"}, "zerodeploy.E003", "must be int or float, not str", "RELOAD_TIMEOUT:", id="wrong-type"),
    pytest.param({"MIN_FREE_DISK_MB": True}, "zerodeploy.E003", "must be int, not bool", "free disk", id="bool-is-not-int"),
    pytest.param({"NOTIFY_ADMINS": "yes"}, "zerodeploy.E003", "must be bool, not str", "mail_admins", id="string-is-not-bool"),
    pytest.param({"REMOTE": None}, "zerodeploy.E003", "must be str, not NoneType", "remote", id="none-not-allowed"),
    pytest.param({"RELOAD_STRATEGY": "restart"}, "zerodeploy.E004", "it must be one of usr2, hup, systemd", "usr2, hup or systemd", id="unknown-strategy"),
    pytest.param({"EXTRA_STEPS": [{"name": "npm", "after": "install", "command": "npm run build"}]}, "zerodeploy.E005", "never a shell string", "EXTRA_STEPS:", id="extra-step-shell-string"),
    pytest.param({"EXTRA_STEPS": [{"name": "npm", "after": "deploy", "command": ["npm", "ci"]}]}, "zerodeploy.E005", "'after' must be one of lock, environment", "EXTRA_STEPS:", id="extra-step-unknown-after"),
    pytest.param({"EXTRA_STEPS": [{"name": "npm", "command": ["npm", "ci"]}]}, "zerodeploy.E005", "'name', 'after' and 'command'", "EXTRA_STEPS:", id="extra-step-missing-after"),
    pytest.param({"EXTRA_STEPS": [{"name": "x", "after": "install", "command": []}]}, "zerodeploy.E005", "non-empty list of strings", "EXTRA_STEPS:", id="extra-step-empty-command"),
    pytest.param({"EXTRA_STEPS": [{"name": "checkout", "after": "install", "command": ["true"]}]}, "zerodeploy.E005", "'checkout' is a built-in step", "EXTRA_STEPS:", id="extra-step-builtin-name"),
    pytest.param({"EXTRA_STEPS": [{"name": "reload", "after": "verify", "command": ["true"]}]}, "zerodeploy.E005", "'reload' is a built-in step", "EXTRA_STEPS:", id="extra-step-builtin-reload"),
    pytest.param({"EXTRA_STEPS": [{"name": "npm", "after": "install", "command": ["npm", "ci"]}, {"name": "npm", "after": "smoke", "command": ["true"]}]}, "zerodeploy.E005", "'npm' is named twice", "EXTRA_STEPS:", id="extra-step-duplicate"),
    pytest.param({"EXTRA_STEPS": [{"name": "", "after": "install", "command": ["true"]}]}, "zerodeploy.E005", "'name' must be a non-empty string", "EXTRA_STEPS:", id="extra-step-empty-name"),
    pytest.param({"SMOKE_URLS": ["healthz/"]}, "zerodeploy.E005", "starting with '/'", "SMOKE_URLS:", id="smoke-url-relative"),
    pytest.param({"REQUIREMENTS": ["/etc/requirements.txt"]}, "zerodeploy.E005", "relative to REPO_DIR", "REQUIREMENTS:", id="requirements-absolute"),
    pytest.param({"REQUIREMENTS": "../outside.txt"}, "zerodeploy.E005", "inside it", "REQUIREMENTS:", id="requirements-outside"),
    pytest.param({"HEALTHZ_URL": "127.0.0.1:8000/healthz/"}, "zerodeploy.E005", "must be an http://, https:// or unix: URL", "HEALTHZ_URL:", id="healthz-url-no-scheme"),
    pytest.param({"HEALTHZ_URL": "unix:/run/gunicorn.sock"}, "zerodeploy.E005", "unix:SOCKET:PATH", "unix:/run/gunicorn.sock:/healthz/", id="healthz-url-unix-without-path"),
    pytest.param({"HEALTHZ_URL": "unix:run/gunicorn.sock:/healthz/"}, "zerodeploy.E005", "absolute socket path", "HEALTHZ_URL:", id="healthz-url-unix-relative"),
    pytest.param({"HEALTHZ_URL": "http://127.0.0.1:port/healthz/"}, "zerodeploy.E005", "Port could not be cast", "HEALTHZ_URL:", id="healthz-url-bad-port"),
    pytest.param({"RELOAD_TIMEOUT": 0}, "zerodeploy.E005", "greater than 0", "RELOAD_TIMEOUT:", id="zero-timeout"),
    pytest.param({"MIN_FREE_DISK_MB": -1}, "zerodeploy.E005", "must not be negative", "MIN_FREE_DISK_MB:", id="negative-disk"),
    pytest.param({"REPO_DIR": "/nonexistent/zerodeploy/checkout"}, "zerodeploy.E005", "not an existing directory", "REPO_DIR:", id="repo-dir-missing"),
    pytest.param({"RELOAD_STRATEGY": "systemd"}, "zerodeploy.W001", "GUNICORN_SYSTEMD_UNIT is not set", "gunicorn.service", id="systemd-without-unit"),
    pytest.param({"WEBHOOK_SECRET": "s" * 40}, "zerodeploy.W003", "WEBHOOK_PROVIDERS is empty", "'WEBHOOK_PROVIDERS': ['github']", id="webhook-without-providers"),
    pytest.param({"WEBHOOK_PROVIDERS": ["github", "bitbucket"]}, "zerodeploy.E005", "unknown provider(s) ['bitbucket']", "WEBHOOK_PROVIDERS:", id="webhook-unknown-provider"),
    pytest.param({"WEBHOOK_SECRET": "short-secret", "WEBHOOK_PROVIDERS": ["github"]}, "zerodeploy.W004", "WEBHOOK_SECRET is 12 bytes long", "secrets.token_urlsafe", id="short-webhook-secret"),
    pytest.param({"HEALTHZ_TOKEN": "x" * 31}, "zerodeploy.W004", "HEALTHZ_TOKEN is 31 bytes long", "secrets.token_urlsafe", id="short-healthz-token"),
]  # fmt: skip


@pytest.mark.parametrize(("config", "check_id", "in_message", "in_hint"), BAD_CONFIGS)
def test_bad_setting_is_a_check_message_with_id_and_hint(config, check_id, in_message, in_hint):
    messages = zerodeploy_messages(**config)
    assert [m.id for m in messages] == [check_id], messages
    message = messages[0]
    assert in_message in message.msg
    assert message.hint and in_hint in message.hint
    expected_level = checks.WARNING if check_id.startswith("zerodeploy.W") else checks.ERROR
    assert message.level == expected_level


def test_pidfile_that_is_a_directory(tmp_path):
    messages = zerodeploy_messages(GUNICORN_PIDFILE=str(tmp_path))
    assert [m.id for m in messages] == ["zerodeploy.E005"]
    assert "is a directory" in messages[0].msg and "--pid" in messages[0].msg
    assert messages[0].hint.startswith("GUNICORN_PIDFILE:")
    assert zerodeploy_messages(GUNICORN_PIDFILE=str(tmp_path / "gunicorn.pid")) == []


def test_runtime_dir_that_is_a_file(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    assert [m.id for m in zerodeploy_messages(RUNTIME_DIR=str(a_file))] == ["zerodeploy.E005"]
    assert zerodeploy_messages(RUNTIME_DIR=str(tmp_path / "not-yet")) == []  # created on use


def test_zerodeploy_not_a_dict():
    with override_settings(ZERODEPLOY=["REMOTE", "origin"]):
        messages = run_zerodeploy_checks()
    assert [m.id for m in messages] == ["zerodeploy.E001"]
    assert "must be a dict, not list" in messages[0].msg


def test_every_problem_is_reported_at_once():
    messages = zerodeploy_messages(REMOTES="x", RELOAD_TIMEOUT="1", RELOAD_STRATEGY="kill")
    assert sorted(m.id for m in messages) == [
        "zerodeploy.E002",
        "zerodeploy.E003",
        "zerodeploy.E004",
    ]


def test_defaults_and_good_values_pass(tmp_path):
    defaults = {name: key.default for name, key in KEYS.items()}
    assert validate(defaults) == []
    assert validate(None) == []
    good = {
        "REPO_DIR": tmp_path,
        "REQUIREMENTS": ["requirements.txt", "requirements/prod.txt"],
        "RELOAD_STRATEGY": "systemd",
        "GUNICORN_SYSTEMD_UNIT": "gunicorn.service",
        "HEALTHZ_URL": "https://127.0.0.1/healthz/",
        "SMOKE_URLS": ("/", "/admin/login/"),
        "EXTRA_STEPS": [
            {
                "name": "messages",
                "after": "install",
                "command": ["python", "manage.py", "compilemessages"],
            }
        ],
        "RELOAD_TIMEOUT": 2.5,
        "NOTIFY_ADMINS": True,
    }
    assert validate(good) == []
    assert zerodeploy_messages(**good) == []
    for url in ("unix:/run/gunicorn.sock:/healthz/", "http://[::1]:8000/healthz/?full=1"):
        assert validate({"HEALTHZ_URL": url}) == [], url


def test_example_project_settings_pass():
    """The settings the tests run with (the example project's) give no zerodeploy message."""
    assert run_zerodeploy_checks() == []


def test_every_check_id_is_documented_and_exercised():
    # ids of checks that look beyond the dict (the process's mounts, the environment) are
    # exercised in the test module named here
    elsewhere = {"zerodeploy.W002": "test_runtime.py"}
    for check_id, module in elsewhere.items():
        assert check_id in (Path(__file__).parent / module).read_text()
    exercised = {p.values[1] for p in BAD_CONFIGS} | {"zerodeploy.E001"} | set(elsewhere)
    assert exercised == set(conf.CHECK_IDS)


def test_require_valid_settings_exits_with_usage():
    with override_settings(ZERODEPLOY={"RELOAD_STRATEGY": "restart", "REMOTES": "x"}):
        with pytest.raises(CommandFailure) as info:
            require_valid_settings()
    assert info.value.exit_code == USAGE
    assert "zerodeploy.E004" in info.value.message and "zerodeploy.E002" in info.value.message
    assert "HINT: Did you mean 'REMOTE'?" in info.value.message
    with override_settings(ZERODEPLOY={"RELOAD_STRATEGY": "systemd"}):
        require_valid_settings()  # a warning alone does not stop a command


# -- reading settings -------------------------------------------------------------------------
def test_app_settings_defaults_and_overrides():
    with override_settings(ZERODEPLOY={}):
        assert app_settings.REMOTE == "origin"
        assert app_settings.RELOAD_STRATEGY == "usr2"
        assert app_settings.SMOKE_URLS == []
        app_settings.SMOKE_URLS.append("/mutated")  # a caller's copy, not the default itself
        assert app_settings.SMOKE_URLS == []
        assert app_settings.requirements == ["requirements.txt"]
    with override_settings(ZERODEPLOY={"REMOTE": "upstream", "REQUIREMENTS": ["a.txt", "b.txt"]}):
        assert app_settings.REMOTE == "upstream"
        assert app_settings.requirements == ["a.txt", "b.txt"]
    with pytest.raises(AttributeError):
        app_settings.NOT_A_KEY  # noqa: B018


def test_repo_dir_is_the_git_top_level_of_base_dir(tmp_path):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    base = tmp_path / "src" / "project"
    base.mkdir(parents=True)
    with override_settings(BASE_DIR=base, ZERODEPLOY={}):
        assert app_settings.repo_dir == tmp_path.resolve()
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    with override_settings(BASE_DIR=base, ZERODEPLOY={"REPO_DIR": str(elsewhere)}):
        assert app_settings.repo_dir == elsewhere.resolve()


def test_runtime_dir_is_private_and_outside_the_checkout(tmp_path):
    configured = tmp_path / "run" / "zd"
    with override_settings(ZERODEPLOY={"RUNTIME_DIR": str(configured)}):
        assert app_settings.runtime_dir == configured
    assert configured.is_dir() and configured.stat().st_mode & 0o777 == 0o700
    with override_settings(ZERODEPLOY={"REPO_DIR": str(tmp_path)}):
        default = app_settings.runtime_dir
    assert default.is_dir() and tmp_path.resolve() not in default.resolve().parents


# -- the docs are generated from KEYS ---------------------------------------------------------
def test_configuration_page_holds_the_generated_table():
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert conf.markdown_table() in page, (
        "docs/configuration.md is out of date with conf.KEYS: run "
        "`python -m django_zerodeploy.conf --write docs/configuration.md`"
    )
    for name, key in KEYS.items():
        assert f"| `{name}` | `{key.default!r}` |" in page


def test_readme_lists_only_real_keys_with_their_defaults():
    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", readme, flags=re.M)
    assert len(rows) >= 9, "README has a short configuration table"
    for name, default in rows:
        assert name in KEYS, f"README documents {name}, which conf.KEYS does not have"
        if default.strip().startswith("`"):
            assert default.strip() == f"`{KEYS[name].default!r}`", name


def test_conf_command_writes_the_table(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text(f"# Settings\n\n{conf.TABLE_START}\nold\n{conf.TABLE_END}\n\nMore text.\n")
    command = [sys.executable, "-m", "django_zerodeploy.conf", "--write", str(page)]
    first = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "updated" in first.stdout
    text = page.read_text()
    assert conf.markdown_table() in text and "old" not in text and text.endswith("More text.\n")
    second = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    assert "already up to date" in second.stdout


# -- a real manage.py check on the example site ----------------------------------------------
@pytest.mark.integration
def test_manage_py_check_reports_bad_settings_without_a_traceback(site, tmp_path):
    good = site.manage("check")
    assert good.returncode == 0 and "no issues" in good.stdout

    # the example settings read these from the environment, as a real server's might
    pidfile_dir = site.manage("check", check=False, ZERODEPLOY_PIDFILE=str(site.runtime))
    assert pidfile_dir.returncode == 1
    assert "zerodeploy.E005" in pidfile_dir.stderr and "is a directory" in pidfile_dir.stderr
    assert "HINT: GUNICORN_PIDFILE:" in pidfile_dir.stderr
    assert "Traceback" not in pidfile_dir.stderr

    strategy = site.manage("check", check=False, ZERODEPLOY_RELOAD_STRATEGY="restart")
    assert strategy.returncode == 1 and "zerodeploy.E004" in strategy.stderr
    assert "Traceback" not in strategy.stderr

    # a project's own settings module with typos and wrong types
    settings_dir = tmp_path / "bad_settings"
    settings_dir.mkdir()
    (settings_dir / "badsettings.py").write_text(
        textwrap.dedent(
            """
            from exampleproject.settings import *  # noqa: F403

            ZERODEPLOY = {
                "RELOAD_STRATEGY": "usr2",
                "GUNICORN_PIDFLE": "/run/gunicorn.pid",
                "RELOAD_TIMEOUT": "60",
                "EXTRA_STEPS": [{"name": "assets", "after": "install", "command": "npm ci && npm run build"}],
            }
            """
        )
    )
    bad = site.manage(
        "check",
        check=False,
        DJANGO_SETTINGS_MODULE="badsettings",
        PYTHONPATH=str(settings_dir),
    )
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "SystemCheckError" in bad.stderr and "Traceback" not in bad.stderr
    for expected in (
        "(zerodeploy.E002) Unknown ZERODEPLOY key 'GUNICORN_PIDFLE'.",
        "HINT: Did you mean 'GUNICORN_PIDFILE'?",
        "(zerodeploy.E003) ZERODEPLOY['RELOAD_TIMEOUT'] must be int or float, not str.",
        "(zerodeploy.E005) ZERODEPLOY['EXTRA_STEPS']: step 'assets': 'command' must be a list",
    ):
        assert expected in bad.stderr, bad.stderr


def test_commands_page_lists_every_exit_code():
    from django_zerodeploy import exit_codes

    page = (ROOT / "docs" / "commands.md").read_text()
    codes = {n: v for n, v in vars(exit_codes).items() if n.isupper() and isinstance(v, int)}
    assert set(codes) == {"OK", "FAILED", "USAGE", "DOWN", "LOCKED"}
    for name, value in codes.items():
        assert f"| {value} | `{name}` |" in page, name
