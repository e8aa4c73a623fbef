"""``manage.py deploy --check`` against a real Gunicorn: a complete setup exits 0, a deliberately
incomplete one reports every missing piece with the line to add, and exits 2."""

from __future__ import annotations

import json
import shutil

import pytest

from django_zerodeploy.runtime import default_runtime_dir

from ..support.gunicorn import free_port

pytestmark = pytest.mark.integration


def findings(site, **env: str) -> tuple[int, dict[str, dict]]:
    result = site.manage("deploy", "--check", "--json", check=False, **env)
    data = json.loads(result.stdout)
    assert data["ok"] is (result.returncode == 0), result.stderr
    return result.returncode, {f["name"]: f for f in data["findings"]}


def test_complete_setup_exits_0(site, gunicorn) -> None:
    code, found = findings(site)
    assert code == 0, found
    for name in (
        "checkout",
        "middleware",
        "URL include",
        "Gunicorn master",
        "HEALTHZ_URL",
        "user",
        "Gunicorn hook",
        "pidfile",
        "runtime directory",
        "systemd unit",
        "reload",
    ):
        assert found[name]["ok"], found[name]
    master = found["Gunicorn master"]["detail"]
    assert f"pid {gunicorn.master_pid()}" in master
    assert "gunicorn" in master and "exampleproject.wsgi:application" in master  # command line
    assert "answers: release" in found["HEALTHZ_URL"]["detail"]
    assert str(site.runtime) in found["runtime directory"]["detail"]
    assert "directly" in found["user"]["detail"]  # the same user: no sudo needed

    # without HEALTHZ_URL the check asks Gunicorn's bind, as the verify step then does
    code, found = findings(site, ZERODEPLOY_HEALTHZ_URL="")
    bound = f"http://127.0.0.1:{gunicorn.port}/healthz/"
    healthz = found["HEALTHZ_URL"]
    assert code == 0 and not healthz["ok"] and not healthz["required"], healthz
    assert f"polls Gunicorn's bind {bound}, which answers: release" in healthz["detail"]
    assert healthz["fix"] == f'ZERODEPLOY["HEALTHZ_URL"] = "{bound}"'

    text = site.manage("deploy", "--check", check=False)
    assert text.returncode == 0
    assert text.stdout.strip().endswith("A deploy would work.")


def _break_django_side(site) -> None:
    """Settings without the middleware and a URLconf without the include, in the checkout (the
    running workers loaded the complete ones before)."""
    project = site.server / "exampleproject"
    (project / "urls_bare.py").write_text(
        "from django.urls import path\nfrom notes import views\n\n"
        'urlpatterns = [path("", views.home, name="home")]\n'
    )
    with open(project / "settings.py", "a") as fh:
        fh.write(
            "\nMIDDLEWARE = [m for m in MIDDLEWARE if 'zerodeploy' not in m]\n"
            'ROOT_URLCONF = "exampleproject.urls_bare"\n'
        )


def test_incomplete_setup_reports_each_missing_piece(site, gunicorn_factory) -> None:
    # Gunicorn with a gunicorn.conf.py that does not load our hooks; the command without pidfile or runtime directory
    # settings (so it looks in another runtime directory than the workers), a HEALTHZ_URL
    # nobody answers, and settings without the middleware or the URL include.
    (site.server / "gunicorn.conf.py").write_text('wsgi_app = "exampleproject.wsgi:application"\n')
    server = gunicorn_factory()
    _break_django_side(site)
    ours = default_runtime_dir(site.server.resolve())
    try:
        code, found = findings(
            site,
            ZERODEPLOY_PIDFILE="",
            ZERODEPLOY_RUNTIME_DIR="",
            ZERODEPLOY_HEALTHZ_URL=f"http://127.0.0.1:{free_port()}/healthz/",
        )
    finally:
        shutil.rmtree(ours, ignore_errors=True)
    assert code == 2
    assert found["Gunicorn master"]["ok"], found["Gunicorn master"]
    assert f"pid {server.master_pid()}" in found["Gunicorn master"]["detail"]
    expected_fixes = {
        "middleware": 'MIDDLEWARE.insert(0, "django_zerodeploy.middleware.HealthCheckMiddleware")',
        "URL include": 'path("", include("django_zerodeploy.urls"))',
        "HEALTHZ_URL": f'ZERODEPLOY["HEALTHZ_URL"] = "http://127.0.0.1:{server.port}/healthz/"',
        "Gunicorn hook": "from django_zerodeploy.gunicorn_conf import *",
        "pidfile": f'ZERODEPLOY["GUNICORN_PIDFILE"] = "{site.pidfile}"',
        "runtime directory": 'ZERODEPLOY["RUNTIME_DIR"] = ',
        "checkout": "git restore FILE",  # settings.py was edited on the server
    }
    for name, fix in expected_fixes.items():
        assert not found[name]["ok"], found[name]
        assert fix in found[name]["fix"], found[name]
    assert str(site.runtime) in found["runtime directory"]["detail"]  # what the workers see
    assert not found["pidfile"]["required"]  # the master is still found by its processes
    # without the hook the reload still works (readiness observed from outside)
    assert found["reload"]["ok"] and "no hook" in found["reload"]["detail"], found["reload"]
    # text output: every missing piece once, with its fix, and the verdict
    text = site.manage(
        "deploy",
        "--check",
        check=False,
        ZERODEPLOY_PIDFILE="",
        ZERODEPLOY_HEALTHZ_URL=f"http://127.0.0.1:{free_port()}/healthz/",
    )
    assert text.returncode == 2
    assert text.stdout.count("[MISS]") >= 3  # middleware, URL include, HEALTHZ_URL
    assert "a deploy would not work" in text.stdout
    assert "Traceback" not in text.stderr + text.stdout
    assert server.get("/healthz/live/")[0] == 200  # nothing was signalled


def test_no_gunicorn_exits_2(site) -> None:
    code, found = findings(site)
    assert code == 2
    assert not found["Gunicorn master"]["ok"]
    assert (
        "gunicorn -c gunicorn.conf.py exampleproject.wsgi:application"
        in (found["Gunicorn master"]["fix"])
    )
