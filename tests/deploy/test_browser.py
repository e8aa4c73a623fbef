"""A real headless Chromium drives the admin of the example site served by Gunicorn: log in,
open the deploy history, start a deploy, watch the detail page follow it to ``succeeded``.

Chromium is Debian's (``/usr/bin/chromium``; ``.ci/run`` installs it), never a downloaded one.
Static files are answered from the site's STATIC_ROOT by the browser context, as the web server
in front of Gunicorn would. Screenshots land in ``test-artifacts/`` (gitignored); with
``ZERODEPLOY_DOCS_SCREENSHOTS=1`` they are also written into ``docs/img/`` for the admin page of
the documentation (generate them that way, look at them, commit them).
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

import pytest

from tests.support.gunicorn import wait_for
from tests.support.qcluster import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    AdminSession,
    cluster_banner,
    create_superuser,
    details,
)
from tests.support.site import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO_ROOT / "test-artifacts"
DOCS_IMG = REPO_ROOT / "docs" / "img"
# the ones docs/admin.md shows
DOCS_SHOTS = {
    "admin-history",
    "admin-deploy-confirm",
    "admin-deploy-running",
    "admin-deploy-succeeded",
    "admin-deploy-steps",
}


def screenshot(page, name: str) -> None:  # noqa: ANN001
    """``test-artifacts/NAME.png``, and ``docs/img/NAME.png`` when asked for the docs."""
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    if os.environ.get("ZERODEPLOY_DOCS_SCREENSHOTS") == "1" and name in DOCS_SHOTS:
        DOCS_IMG.mkdir(exist_ok=True)
        page.screenshot(path=str(DOCS_IMG / f"{name}.png"), full_page=False)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium), as .ci/run does"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


def serve_static(context, base: str, static_root: Path) -> None:
    """Answer /static/ from STATIC_ROOT, as nginx would in front of Gunicorn."""

    def handle(route, request):  # noqa: ANN001
        rel = request.url.split("/static/", 1)[1].split("?", 1)[0]
        path = (static_root / rel).resolve()
        if static_root.resolve() in path.parents and path.is_file():
            route.fulfill(
                status=200,
                body=path.read_bytes(),
                content_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
            )
        else:
            route.fulfill(status=404, body=b"not found")

    context.route(f"{base}/static/**", handle)


def test_deploy_from_the_admin_in_a_real_browser(
    site, gunicorn_factory, load_factory, qcluster_factory, browser
):
    v2 = site.commit_release("v2", message="Release v2: deployed from a browser")
    server = gunicorn_factory(workers=2)
    create_superuser(site)
    cluster = qcluster_factory(site)
    probe = AdminSession(server.port)
    probe.login()
    assert wait_for(lambda: cluster_banner(probe) == "running", timeout=60), cluster.log_text()
    ARTIFACTS.mkdir(exist_ok=True)
    base = f"http://127.0.0.1:{server.port}"

    context = browser.new_context(viewport={"width": 1440, "height": 900})
    serve_static(context, base, site.static_root)
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    # log in
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", ADMIN_USER)
    page.fill("#id_password", ADMIN_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}/admin/")

    # the history, styled by the admin's own CSS
    page.goto(f"{base}/admin/django_zerodeploy/deployment/")
    assert page.locator("#site-name").inner_text().strip() == "Django administration"
    assert page.locator("[data-zd-cluster=running]").count() == 1
    header_bg = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_bg not in ("rgba(0, 0, 0, 0)", "transparent"), "admin CSS not loaded"
    screenshot(page, "admin-history-empty")

    load = load_factory(port=server.port, clients=3, max_seconds=240, timeout=30).start()
    try:
        with load.operation():
            # Deploy now -> the confirmation page with the dry-run plan -> confirm
            page.click("a.zd-deploy-now")
            page.wait_for_selector("pre.zd-plan")
            plan = page.inner_text("pre.zd-plan")
            assert v2[:10] in plan and "Release v2: deployed from a browser" in plan
            screenshot(page, "admin-deploy-confirm")
            page.click("#zd-confirm")
            page.wait_for_url("**/deployment/*/change/")
            deployment_id = int(page.url.rstrip("/").split("/")[-2])
            assert "is queued" in page.inner_text("ul.messagelist")

            # the page follows the deploy by itself: steps appear while it runs, then it reloads
            page.wait_for_function(
                "() => document.querySelectorAll('#zd-steps-body tr.zd-step').length > 0"
                " || document.querySelector('#zd-live').dataset.zdFinished === 'true'",
                timeout=240_000,
            )
            if page.get_attribute("#zd-live", "data-zd-finished") == "false":
                screenshot(page, "admin-deploy-running")
            page.wait_for_function(
                "() => document.querySelector('#zd-live').dataset.zdFinished === 'true'"
                " && document.querySelector('#zd-live-status').textContent.trim() !== ''",
                timeout=420_000,
            )
            page.wait_for_load_state("load")
    finally:
        report = load.stop()
    report.assert_covered()

    status = page.inner_text("#zd-live-status").strip()
    assert status == "succeeded", details(site, cluster, deployment_id)
    assert page.inner_text("#zd-live-sha").strip() == v2[:10]
    assert "Release v2: deployed from a browser" in page.inner_text("#zd-live-subject")
    assert "Release v2: deployed from a browser" in page.inner_text("ul.zd-commits")
    assert page.locator("#zd-steps-body tr.zd-step-ok").count() >= 5
    screenshot(page, "admin-deploy-succeeded")
    page.locator("#zd-steps-body").scroll_into_view_if_needed()
    screenshot(page, "admin-deploy-steps")

    # back in the history: the new row, newest first, with its badge
    page.goto(f"{base}/admin/django_zerodeploy/deployment/")
    first_row = page.locator("#result_list tbody tr").first
    assert first_row.locator(".zd-badge").inner_text().strip() == "succeeded"
    assert v2[:10] in first_row.inner_text()
    screenshot(page, "admin-history")
    context.close()

    assert errors == [], errors
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v2"}
