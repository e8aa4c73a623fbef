"""The lazy-import probe: an old worker that imports a module and a package only when a request
asks for them, during a deploy that changes both (a new module version and a package upgraded
by a real pip install from wheels the test builds), always gets the old ones. It runs from its
own release directory and venv, which the deploy never touches; ROOT/current moved meanwhile."""

from __future__ import annotations

import os
import threading

import pytest

from tests.support.releases import (
    deploy_from_current,
    requirements_with,
    serve_from_releases,
    use_wheelhouse,
)

pytestmark = pytest.mark.integration

LAZY_VIEW = '''import importlib
import sys

from django.http import HttpResponse

from .release import RELEASE_NAME


def lazy(request):
    """Imports a module of the project and a package only now, as lazily imported code does."""
    for name in ("notes.lazy_probe", "zdprobe"):
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    probe = importlib.import_module("notes.lazy_probe")
    package = importlib.import_module("zdprobe")
    response = HttpResponse(f"{RELEASE_NAME} {probe.WHICH} {package.VERSION}")
    response["X-Example-Release"] = RELEASE_NAME
    return response
'''


def release_files(site, which: str, version: str) -> dict[str, str]:
    urls = (site.dev / "exampleproject" / "urls.py").read_text()
    if "lazy/" not in urls:
        urls = urls.replace("from notes import views", "from notes import lazy, views")
        urls = urls.replace('    path("admin/"', '    path("lazy/", lazy.lazy),\n    path("admin/"')
    return {
        "notes/lazy.py": LAZY_VIEW,
        "notes/lazy_probe.py": f"WHICH = {which!r}\n",
        "exampleproject/urls.py": urls,
        "requirements.txt": requirements_with(f"zdprobe=={version}"),
    }


def test_an_old_worker_importing_lazily_during_a_deploy_sees_only_the_old_release(
    site, tmp_path, gunicorn_factory
):
    use_wheelhouse(site, tmp_path / "wheels", "zdprobe", ("1.0", "2.0"))
    root_dir, root, server = serve_from_releases(site, tmp_path, gunicorn_factory)
    site.commit_release("v1", release_files(site, "v1", "1.0"))
    first = deploy_from_current(site, root_dir)  # a requirement change: a new venv
    assert first.returncode == 0, first.stdout + first.stderr
    old = root.current()
    assert server.get("/lazy/")[2] == b"v1 v1 1.0"

    site.commit_release("v2", release_files(site, "v2", "2.0"))
    seen: list[tuple[bytes, bool]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set() and len(seen) < 20_000:
            switched = os.readlink(root.current_link) != f"releases/{old.name}"
            status, _headers, body = server.get("/lazy/", timeout=30)
            seen.append((body if status == 200 else f"status {status}".encode(), switched))

    pollers = [threading.Thread(target=poll) for _ in range(2)]
    for thread in pollers:
        thread.start()
    try:
        result = deploy_from_current(site, root_dir)
    finally:
        stop.set()
        for thread in pollers:
            thread.join()
    assert result.returncode == 0, result.stdout + result.stderr
    new = root.current()
    assert new != old and new.venv_key != old.venv_key  # a new venv; the old one untouched
    assert (root.venvs_dir / old.venv_key).is_dir()
    answers = {body for body, _ in seen}
    assert answers <= {b"v1 v1 1.0", b"v2 v2 2.0"}, answers  # never a mix of two releases
    # old workers imported lazily after current had moved, and still got the old files
    assert any(body == b"v1 v1 1.0" and switched for body, switched in seen)
    assert server.get("/lazy/")[2] == b"v2 v2 2.0"
