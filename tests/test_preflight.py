"""``preflight()`` runs a release in a fresh interpreter: the WSGI app, the URLconf, smoke URLs
and optionally ``manage.py check``; a failure names its step and shows the last frames."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from django_zerodeploy.preflight import (
    PreflightResult,
    call_wsgi,
    check_urlconf,
    preflight,
    smoke,
    system_check_errors,
)
from tests.support.site import Site, make_site


@pytest.fixture(scope="module")
def base_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """One migrated example site; each test copies its checkout and breaks the copy."""
    return make_site(tmp_path_factory.mktemp("preflight") / "site")


def variant(site: Site, tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    code = tmp_path / "code"
    shutil.copytree(site.server, code, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    for rel, text in (files or {}).items():
        (code / rel).write_text(text)
    return code


def _edit(site: Site, rel: str, old: str, new: str) -> str:
    text = (site.server / rel).read_text()
    assert old in text
    return text.replace(old, new, 1)


def test_a_good_release_passes_every_step(base_site, tmp_path):
    code = variant(base_site, tmp_path)
    result = preflight(
        code, env=base_site.env(), manage_check=True, smoke_urls=["/", "/notes/"], timeout=120
    )
    assert isinstance(result, PreflightResult)
    assert result.ok and result.step == "ok", result
    assert "exampleproject.wsgi.application imported" in result.message  # from WSGI_APPLICATION
    assert "2 smoke URL(s) answered" in result.message
    assert result.output == "" and result.duration > 0


def test_explicit_wsgi_app_and_a_missing_one(base_site, tmp_path):
    code = variant(base_site, tmp_path)
    good = preflight(
        code, env=base_site.env(), wsgi_app="exampleproject.wsgi:application", timeout=120
    )
    assert good.ok, good
    bad = preflight(
        code, env=base_site.env(), wsgi_app="exampleproject.wsgi:no_such_app", timeout=120
    )
    assert not bad.ok and bad.step == "import-wsgi"
    assert "no attribute 'no_such_app'" in bad.message


def test_broken_settings_fail_at_import_with_redacted_frames(base_site, tmp_path):
    settings_py = _edit(
        base_site,
        "exampleproject/settings.py",
        "DEBUG =",
        "raise RuntimeError('cannot reach vault with ' + os.environ['EXAMPLE_API_TOKEN'])\nDEBUG =",
    )
    code = variant(base_site, tmp_path, {"exampleproject/settings.py": settings_py})
    result = preflight(code, env=base_site.env(EXAMPLE_API_TOKEN="tok-9f8e7d6c5b4a"), timeout=120)
    assert not result.ok and result.step == "import-wsgi"
    assert result.message.startswith(
        "The WSGI application failed to import: RuntimeError: cannot reach vault"
    )
    assert 'exampleproject/settings.py", line' in result.output  # the last frames
    assert "tok-9f8e7d6c5b4a" not in result.message + result.output  # secrets are redacted
    assert "***" in result.message


def test_broken_urlconf_fails_at_urlconf(base_site, tmp_path):
    urls = _edit(
        base_site,
        "exampleproject/urls.py",
        "from notes import views",
        "from notes import views\nfrom notes import no_such_views",
    )
    code = variant(base_site, tmp_path, {"exampleproject/urls.py": urls})
    result = preflight(code, env=base_site.env(), timeout=120)
    assert not result.ok and result.step == "urlconf"
    assert "cannot import name 'no_such_views'" in result.message
    assert "urls.py" in result.output


def test_a_smoke_url_answering_500_fails_at_smoke(base_site, tmp_path):
    views = _edit(
        base_site,
        "notes/views.py",
        "def notes(request):\n",
        "def notes(request):\n    raise ValueError('notes are broken')\n",
    )
    code = variant(base_site, tmp_path, {"notes/views.py": views})
    result = preflight(code, env=base_site.env(), smoke_urls=["/", "/notes/"], timeout=120)
    assert not result.ok and result.step == "smoke"
    assert result.message == "Smoke URL failed: /notes/ answered 500."
    assert "notes are broken" in result.output  # Django logged the traceback


def test_manage_check_errors_fail_at_check(base_site, tmp_path):
    models = (base_site.server / "notes" / "models.py").read_text() + (
        "\n\nclass Broken(models.Model):\n"
        "    other = models.ForeignKey('notes.NoSuchModel', on_delete=models.CASCADE)  # fields.E300\n"
    )
    code = variant(base_site, tmp_path, {"notes/models.py": models})
    result = preflight(code, env=base_site.env(), manage_check=True, timeout=120)
    assert not result.ok and result.step == "check"
    assert "manage.py check failed" in result.message
    assert "fields.E300" in result.output


def test_a_release_that_hangs_is_stopped_by_the_timeout(base_site, tmp_path):
    code = variant(base_site, tmp_path)
    result = preflight(code, env=base_site.env(EXAMPLE_BOOT_DELAY="30"), timeout=3)
    assert not result.ok and result.step == "import-wsgi"
    assert "timed out after 3 s" in result.message
    assert result.duration < 25


def test_in_process_helpers_answer_like_a_server(db):
    """call_wsgi and smoke speak WSGI to any callable; check_urlconf loads the whole tree."""

    def app(environ, start_response):  # noqa: ANN001, ANN202
        if environ["PATH_INFO"] == "/boom":
            raise RuntimeError("boom")
        code = "500 Internal Server Error" if environ["PATH_INFO"] == "/500" else "200 OK"
        start_response(code, [("Content-Type", "text/plain")])
        return [environ["HTTP_HOST"].encode(), b" ", environ["QUERY_STRING"].encode()]

    assert call_wsgi(app, "/ok?x=1") == (200, b"127.0.0.1 x=1")  # the first ALLOWED_HOSTS entry
    assert smoke(app, ["/ok", "/500", "/boom"]) == [
        "/500 answered 500",
        "/boom raised RuntimeError: boom",
    ]
    assert check_urlconf() > 5


@pytest.mark.django_db  # Django 6's model checks ask the database backend's features
def test_system_check_errors_are_those_manage_py_check_fails_on(settings):
    """What the readiness hook runs in a new generation: errors count, unless silenced;
    warnings never do."""
    from django.core import checks

    def fails(app_configs, **kwargs):  # noqa: ANN001, ANN003, ANN202
        return [
            checks.Error("broken", id="tests.E901"),
            checks.Error("silenced", id="tests.E902"),
            checks.Warning("only a warning", id="tests.W901"),
        ]

    assert system_check_errors() == []
    settings.SILENCED_SYSTEM_CHECKS = ["tests.E902"]
    checks.register(fails)
    try:
        assert system_check_errors() == ["?: (tests.E901) broken"]
    finally:
        checks.registry.registry.registered_checks.discard(fails)


def test_the_preflight_keeps_the_plan_json_apart_from_stderr(monkeypatch):
    from django_zerodeploy import preflight

    def command(*args, stdout, stderr, **kwargs):
        stderr.write("warning: something on stderr\n")
        stdout.write(json.dumps({"pending": [], "errors": []}))

    # replaced: the real plan command writes nothing on stderr unless a project's code does;
    # the separation of the two streams is what this test is about
    monkeypatch.setattr("django.core.management.call_command", command)
    code, out, err = preflight._migration_plan(False)
    assert code == 0 and json.loads(out) == {"pending": [], "errors": []}
    assert "warning" in err
