"""/healthz/ in-process: the response format, who sees what, every check failing, timeouts,
the per-process cache, draining, the system check and the ``healthz`` command.

Real collaborators: the test SQLite database, locmem and Redis caches, the drain flag file.
Servers (Gunicorn, PostgreSQL) are in test_healthz_gunicorn.py.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from datetime import datetime
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from django_zerodeploy import exit_codes, health
from django_zerodeploy.checks import check_health_checks
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.health import Check, CheckWarning, Observation, drain, health_check
from django_zerodeploy.health.builtin import DrainingCheck
from django_zerodeploy.health.runner import execute
from django_zerodeploy.release import boot_release

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-token-for-tests"
SECRET_TEXT = "hunter2-connection-string"
ALLOWED_TOP = {
    "status",
    "version",
    "releaseId",
    "notes",
    "output",
    "checks",
    "links",
    "serviceId",
    "description",
    "pid",
}
ALLOWED_ENTRY = {
    "componentId",
    "componentType",
    "observedValue",
    "observedUnit",
    "status",
    "affectedEndpoints",
    "time",
    "output",
    "links",
    "critical",
}


def assert_health_json(doc: dict[str, Any], details: bool) -> None:
    """The fields of draft-inadarei-api-health-check, and only what the audience may see."""
    assert doc["status"] in ("pass", "warn", "fail")
    assert isinstance(doc["releaseId"], str)
    assert set(doc) <= ALLOWED_TOP, set(doc) - ALLOWED_TOP
    if not details:
        assert set(doc) <= {"status", "releaseId", "version"}, doc
        return
    assert isinstance(doc["pid"], int)
    assert isinstance(doc["checks"], dict) and doc["checks"]
    for key, entries in doc["checks"].items():
        assert isinstance(key, str) and key
        assert isinstance(entries, list) and entries
        for entry in entries:
            assert set(entry) <= ALLOWED_ENTRY, set(entry) - ALLOWED_ENTRY
            assert entry["status"] in ("pass", "warn", "fail")
            assert isinstance(entry["critical"], bool)
            datetime.fromisoformat(entry["time"].replace("Z", "+00:00"))
            if entry["status"] == "pass":
                assert "output" not in entry
            if "observedUnit" in entry:
                assert isinstance(entry["observedUnit"], str)


# -- checks used by the tests (referenced by dotted path) ----------------------------------
CALLS: dict[str, int] = {}
RELEASE = threading.Event()


def counting() -> float:
    CALLS["counting"] = CALLS.get("counting", 0) + 1
    return 1.0


def hanging() -> None:
    RELEASE.wait(60)


def broken() -> None:
    raise RuntimeError(f"cannot reach {SECRET_TEXT}")


def warning() -> None:
    raise CheckWarning("queue is getting long")


@health_check("search:responseTime", critical=False, timeout=0.5)
def decorated() -> Observation:
    return Observation(12.5, "ms")


class QueueDepth(Check):
    name = "queue:depth"

    def __init__(self, depth: int = 3, **kwargs: Any) -> None:
        self.depth = depth
        super().__init__(**kwargs)

    def check(self) -> Observation:
        return Observation(self.depth, "tasks", "warn" if self.depth > 10 else "pass")


NotACheck = dict
ONLY_DB = ["django_zerodeploy.health.builtin.DatabaseCheck"]


# -- fixtures --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def own_runtime(settings, tmp_path):
    """A runtime dir (drain flag) per test, and fresh health state."""
    settings.ZERODEPLOY = {
        **settings.ZERODEPLOY,
        "RUNTIME_DIR": str(tmp_path / "run"),
        "HEALTHZ_TOKEN": TOKEN,
    }
    health.reset()
    CALLS.clear()
    yield
    health.reset()


def configure(settings, **values: Any) -> None:
    settings.ZERODEPLOY = {**settings.ZERODEPLOY, **values}


def get(client, path="/healthz/", token: str | None = None, **extra: Any):
    if token is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client.get(path, **extra)


def details(client, **extra: Any) -> dict[str, Any]:
    response = get(client, token=TOKEN, **extra)
    doc = json.loads(response.content)
    assert_health_json(doc, details=True)
    return doc


def entry(doc: dict[str, Any], name: str, component_id: str | None = None) -> dict[str, Any]:
    for item in doc["checks"][name]:
        if component_id is None or item.get("componentId") == component_id:
            return item
    raise AssertionError(f"no {name} {component_id} in {doc['checks']}")


# -- format and audience ---------------------------------------------------------------------
def test_anonymous_sees_status_release_and_version_only(client, settings):
    configure(settings, VERSION="1.4.2")
    response = get(client)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/health+json"
    assert response["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in response
    assert not response.cookies
    doc = json.loads(response.content)
    assert_health_json(doc, details=False)
    assert doc == {"status": doc["status"], "version": "1.4.2", "releaseId": boot_release()}
    assert doc["status"] in ("pass", "warn")
    assert len(doc["releaseId"]) == 40


def test_token_unlocks_details_in_the_draft_format(client):
    doc = details(client)
    assert doc["releaseId"] == boot_release()
    assert doc["status"] in ("pass", "warn")
    db = entry(doc, "database:responseTime", "default")
    assert db["status"] == "pass" and db["observedUnit"] == "ms" and db["observedValue"] > 0
    assert entry(doc, "cache:responseTime", "default")["status"] == "pass"
    assert entry(doc, "migrations:unapplied", "default")["observedValue"] == 0
    assert entry(doc, "disk:utilization")["observedUnit"] == "percent"
    assert entry(doc, "memory:utilization")["critical"] is False
    assert entry(doc, "drain:draining")["observedValue"] is False


@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"bearer{TOKEN}"],
)
def test_wrong_or_missing_token_gets_the_anonymous_answer(client, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    doc = json.loads(client.get("/healthz/", **extra).content)
    assert set(doc) == {"status", "releaseId"}


def test_no_token_configured_means_no_bearer_access(client, settings):
    configure(settings, HEALTHZ_TOKEN=None)
    doc = json.loads(get(client, token="").content)
    assert set(doc) == {"status", "releaseId"}
    doc = json.loads(get(client, token="None").content)
    assert set(doc) == {"status", "releaseId"}


def test_public_details_setting(client, settings):
    configure(settings, HEALTHZ_PUBLIC_DETAILS=True)
    doc = json.loads(get(client).content)
    assert_health_json(doc, details=True)


@pytest.mark.django_db(transaction=True)  # the lookup runs on its own thread
def test_staff_session_sees_details_without_touching_the_session(client):
    user_model = get_user_model()
    staff = user_model.objects.create_user("ops", password="pw", is_staff=True)
    client.force_login(staff)
    before = dict(client.cookies.items())
    response = get(client)
    assert "Set-Cookie" not in response
    assert dict(client.cookies.items()) == before
    assert_health_json(json.loads(response.content), details=True)


@pytest.mark.django_db(transaction=True)  # the lookup runs on its own thread
def test_non_staff_session_is_anonymous(client):
    user = get_user_model().objects.create_user("visitor", password="pw")
    client.force_login(user)
    response = get(client)
    assert "Set-Cookie" not in response
    assert set(json.loads(response.content)) == {"status", "releaseId"}


class HungSessionStore:
    """A file session store whose session file is a FIFO nobody writes: open() blocks, as a
    session database that accepts and never answers does. Released at teardown."""

    def __init__(self, settings, tmp_path, key: str) -> None:
        import os

        self.path = tmp_path / (settings.SESSION_COOKIE_NAME + key)
        os.mkfifo(self.path)
        settings.SESSION_ENGINE = "django.contrib.sessions.backends.file"
        settings.SESSION_FILE_PATH = str(tmp_path)

    def release(self) -> None:
        import os

        try:  # a writer that opens and closes at once: the blocked reader gets EOF
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass  # no reader was blocked


def timed_get(client, **extra: Any) -> tuple[Any, float]:
    """A GET on its own thread, so a hang fails the test instead of stalling it."""
    found: dict[str, Any] = {}

    def call() -> None:
        started = time.monotonic()
        found["response"] = get(client, **extra)
        found["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the probe hung"
    return found["response"], found["elapsed"]


def test_a_probe_with_any_session_cookie_never_waits_for_the_session_store(
    client, settings, tmp_path
):
    key = "a" * 32  # shaped like a Django session key: it is looked up
    store = HungSessionStore(settings, tmp_path, key)
    configure(settings, HEALTHZ_CHECK_TIMEOUT=0.5)
    try:
        for _ in range(3):  # the first waits for the lookup's deadline, the later ones not
            response, elapsed = timed_get(client, HTTP_COOKIE=f"sessionid={key}")
            assert response.status_code in (200, 503)
            assert set(json.loads(response.content)) == {"status", "releaseId"}
            assert elapsed < 10, f"the probe waited {elapsed:.1f} s for a hung session store"
    finally:
        store.release()


def test_without_the_health_middleware_first_a_hung_session_store_is_still_bounded(
    client, settings, tmp_path
):
    """Reached through SessionMiddleware and AuthenticationMiddleware (HealthCheckMiddleware
    missing), request.user is lazy: using it would load the session on the request thread."""
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "zerodeploy" not in m]
    assert "django.contrib.auth.middleware.AuthenticationMiddleware" in settings.MIDDLEWARE
    key = "c" * 32
    store = HungSessionStore(settings, tmp_path, key)
    configure(settings, HEALTHZ_CHECK_TIMEOUT=0.5)
    try:
        response, elapsed = timed_get(client, HTTP_COOKIE=f"sessionid={key}")
        assert set(json.loads(response.content)) == {"status", "releaseId"}
        assert elapsed < 10, f"the probe waited {elapsed:.1f} s for a hung session store"
    finally:
        store.release()


def test_an_anonymous_looking_cookie_never_reaches_the_session_store(client, settings, tmp_path):
    key = "b" * 40  # a name the file store accepts, but no Django store makes: not opened
    store = HungSessionStore(settings, tmp_path, key)
    configure(settings, HEALTHZ_CHECK_TIMEOUT=30)  # a lookup would hang the whole 30 s
    try:
        response, elapsed = timed_get(client, HTTP_COOKIE=f"sessionid={key}")
        assert set(json.loads(response.content)) == {"status", "releaseId"}
        assert elapsed < 10
    finally:
        store.release()


def test_probe_answers_the_instance_ip_as_host_and_other_paths_still_reject_it(client):
    assert get(client, HTTP_HOST="10.0.0.5").status_code == 200
    assert get(client, "/healthz/live/", HTTP_HOST="10.0.0.5").status_code == 200
    assert client.get("/", HTTP_HOST="10.0.0.5").status_code == 400
    assert client.get("/healthz", HTTP_HOST="10.0.0.5").status_code == 400  # not a health path


def test_head_answers_like_get_without_a_body(client):
    got = get(client)
    head = client.head("/healthz/")
    assert head.status_code == got.status_code == 200
    assert head.content == b""
    assert head["Content-Length"] == str(len(got.content))
    assert head["Content-Type"] == "application/health+json"
    assert client.head("/healthz/live/").status_code == 200


def test_other_methods_are_refused(client):
    response = client.post("/healthz/")
    assert response.status_code == 405
    assert "GET" in response["Allow"] and "HEAD" in response["Allow"]


def test_liveness_checks_nothing(client, settings):
    configure(settings, HEALTH_CHECKS=["tests.health.test_healthz.broken"])
    health.set_draining(True)
    response = get(client, "/healthz/live/")
    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "pass", "releaseId": boot_release()}
    assert get(client).status_code == 503


def test_probes_use_no_query_on_the_request_thread(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert get(client).status_code == 200  # uncached: the checks run on their own lanes
        assert get(client).status_code == 200  # cached


# -- failing checks ----------------------------------------------------------------------------
def test_failing_critical_check_is_503_and_its_text_stays_server_side(client, settings, caplog):
    configure(settings, HEALTH_CHECKS=[*ONLY_DB, "tests.health.test_healthz.broken"])
    with caplog.at_level(logging.ERROR, logger="django_zerodeploy.health"):
        response = get(client)
    assert response.status_code == 503
    assert json.loads(response.content) == {"status": "fail", "releaseId": boot_release()}
    assert SECRET_TEXT not in response.content.decode()
    assert any(SECRET_TEXT in r.getMessage() and r.exc_info for r in caplog.records)
    health.reset()
    failing = entry(details(client), "broken")
    assert failing["status"] == "fail" and "RuntimeError" in failing["output"]


def test_failing_non_critical_check_warns_with_200(client, settings):
    configure(
        settings,
        HEALTH_CHECKS=[*ONLY_DB, {"check": "tests.health.test_healthz.broken", "critical": False}],
    )
    response = get(client)
    assert response.status_code == 200
    assert json.loads(response.content)["status"] == "warn"
    health.reset()
    doc = details(client)
    assert doc["status"] == "warn"
    assert entry(doc, "broken")["status"] == "fail"
    assert entry(doc, "broken")["critical"] is False


def test_check_warning_warns(client, settings):
    configure(settings, HEALTH_CHECKS=[*ONLY_DB, "tests.health.test_healthz.warning"])
    doc = details(client)
    assert doc["status"] == "warn"
    assert entry(doc, "warning")["output"] == "queue is getting long"
    assert get(client).status_code == 200


def test_hung_check_answers_503_within_its_timeout(client, settings):
    name = f"hang:{uuid.uuid4().hex[:8]}"
    configure(
        settings,
        HEALTH_CHECKS=[
            *ONLY_DB,
            {"check": "tests.health.test_healthz.hanging", "name": name, "timeout": 0.5},
        ],
        HEALTHZ_CACHE_SECONDS=0,
    )
    RELEASE.clear()
    try:
        started = time.monotonic()
        response = get(client)
        first = time.monotonic() - started
        assert response.status_code == 503
        assert first < 30  # answered on its timeout, not when the check (60 s) returned
        doc = details(client)  # the same check is still stuck: no new thread, no new wait
        assert entry(doc, name)["output"].startswith("still running from an earlier round")
        assert entry(doc, "database:responseTime")["status"] == "pass"
        assert sum(t.name == f"healthz:{name}" for t in threading.enumerate()) == 1
    finally:
        RELEASE.set()


def test_a_hung_check_that_comes_back_passes_again(client, settings):
    name = f"hang:{uuid.uuid4().hex[:8]}"
    configure(
        settings,
        HEALTH_CHECKS=[
            {"check": "tests.health.test_healthz.hanging", "name": name, "timeout": 0.3}
        ],
        HEALTHZ_CACHE_SECONDS=0,
    )
    RELEASE.clear()
    try:
        assert get(client).status_code == 503
    finally:
        RELEASE.set()
    deadline = time.monotonic() + 30
    while get(client).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get(client).status_code == 200


@pytest.mark.django_db(transaction=True)  # the checks' lanes read committed data only
def test_unapplied_migrations_fail_until_applied(client, settings):
    configure(settings, HEALTH_CHECKS=["django_zerodeploy.health.builtin.MigrationsCheck"])
    recorder = MigrationRecorder(connection)
    recorder.record_unapplied("notes", "0001_initial")
    try:
        response = get(client)
        assert response.status_code == 503
        health.reset()
        item = entry(details(client), "migrations:unapplied", "default")
        assert item["status"] == "fail" and item["observedValue"] == 1
        assert "notes.0001_initial" in item["output"]
    finally:
        recorder.record_applied("notes", "0001_initial")
    health.reset()
    assert get(client).status_code == 200


def test_draining_answers_503_until_resumed(client, settings):
    configure(settings, HEALTH_CHECKS=ONLY_DB, HEALTHZ_CACHE_SECONDS=0)
    assert not health.is_draining()
    assert get(client).status_code == 200
    health.set_draining(True, reason="kernel upgrade")
    assert health.is_draining()
    response = get(client)
    assert response.status_code == 503
    assert json.loads(response.content) == {"status": "fail", "releaseId": boot_release()}
    doc = details(client)
    assert doc["notes"] == ["draining"]
    drain = entry(doc, "drain:draining")
    assert drain["status"] == "fail" and "kernel upgrade" in drain["output"]
    health.set_draining(False)
    assert not health.is_draining()
    assert get(client).status_code == 200


def test_drain_check_cannot_be_configured_away(settings):
    configure(settings, HEALTH_CHECKS=[])
    checks = health.build_checks()
    assert [c.name for c in checks] == ["drain:draining"]


# -- caches ------------------------------------------------------------------------------------
def test_results_are_cached_per_process_for_the_window(client, settings):
    configure(
        settings, HEALTH_CHECKS=["tests.health.test_healthz.counting"], HEALTHZ_CACHE_SECONDS=60
    )
    for _ in range(25):
        assert get(client).status_code == 200
    assert CALLS["counting"] == 1
    configure(
        settings, HEALTH_CHECKS=["tests.health.test_healthz.counting"], HEALTHZ_CACHE_SECONDS=0
    )
    for _ in range(5):
        get(client)
    assert CALLS["counting"] == 6


def test_a_passing_migrations_result_is_reused_longer_than_the_window(settings):
    configure(
        settings,
        HEALTH_CHECKS=[
            "django_zerodeploy.health.builtin.MigrationsCheck",
            "tests.health.test_healthz.counting",
        ],
        HEALTHZ_CACHE_SECONDS=0,
    )
    first = health.get_report()
    second = health.get_report()
    assert second.results[0] is first.results[0]  # migrations: kept (cache_seconds=30)
    assert second.results[1] is not first.results[1]  # counting: run again
    assert CALLS["counting"] == 2
    assert health.run_checks().results[0] is not first.results[0]  # fresh ignores it


def test_redis_cache_round_trip(client, settings):
    prefix = f"zd-test-{uuid.uuid4().hex[:8]}"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/0",
            "KEY_PREFIX": prefix,
        },
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    configure(settings, HEALTH_CHECKS=["django_zerodeploy.health.builtin.CacheCheck"])
    doc = details(client)
    assert [e["componentId"] for e in doc["checks"]["cache:responseTime"]] == ["default", "redis"]
    assert entry(doc, "cache:responseTime", "redis")["status"] == "pass"
    assert doc["status"] == "pass"


def test_unreachable_redis_fails_within_the_timeout(client, settings):
    from tests.support.gunicorn import free_port

    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        },
    }
    configure(
        settings,
        HEALTH_CHECKS=["django_zerodeploy.health.builtin.CacheCheck"],
        HEALTHZ_CHECK_TIMEOUT=5,
    )
    response = get(client)
    assert response.status_code == 503
    assert "Connection" not in response.content.decode()
    health.reset()
    item = entry(details(client), "cache:responseTime", "default")
    assert item["status"] == "fail" and "ConnectionError" in item["output"]


# -- the check API and its configuration -----------------------------------------------------
def test_entries_callables_classes_dicts_and_lists(settings):
    configure(
        settings,
        HEALTH_CHECKS=[
            "django_zerodeploy.health.DEFAULT_CHECKS",
            "tests.health.test_healthz.decorated",
            {
                "check": "tests.health.test_healthz.QueueDepth",
                "options": {"depth": 42},
                "critical": False,
                "timeout": 3,
                "name": "queue:depth",
            },
            {
                "check": "tests.health.test_healthz.counting",
                "name": "counter:value",
                "cache_seconds": 5,
            },
        ],
    )
    checks = {c.key: c for c in health.build_checks()}
    assert {
        "database:responseTime[default]",
        "cache:responseTime[default]",
        "migrations:unapplied[default]",
        "disk:utilization",
        "memory:utilization",
        "drain:draining",
        "search:responseTime",
        "queue:depth",
        "counter:value",
    } <= set(checks)
    assert checks["search:responseTime"].critical is False
    assert checks["search:responseTime"].timeout == 0.5
    assert checks["queue:depth"].critical is False and checks["queue:depth"].timeout == 3
    assert checks["queue:depth"].depth == 42
    assert checks["counter:value"].cache_seconds == 5
    report = health.run_checks()
    by_key = {r.key: r for r in report.results}
    assert by_key["queue:depth"].status == "warn" and by_key["queue:depth"].value == 42
    assert by_key["search:responseTime"].value == 12.5


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        (["tests.health.test_healthz.does_not_exist"], "cannot import"),
        (["nodots"], "not a dotted path"),
        ([42], "dotted path string or a dict"),
        ([{"name": "x"}], "needs 'check'"),
        ([{"check": "tests.health.test_healthz.counting", "critical": "yes"}], "'critical'"),
        ([{"check": "tests.health.test_healthz.counting", "timeout": -1}], "positive number"),
        ([{"check": "tests.health.test_healthz.counting", "timout": 1}], "unknown keys"),
        (["tests.health.test_healthz.NotACheck"], "not a django_zerodeploy.health.Check"),
        (
            [{"check": "tests.health.test_healthz.QueueDepth", "options": {"nope": 1}}],
            "bad options",
        ),
        (
            ["tests.health.test_healthz.counting", "tests.health.test_healthz.counting"],
            "two checks are named",
        ),
    ],
)
def test_system_check_reports_bad_entries(settings, entries, fragment):
    configure(settings, HEALTH_CHECKS=entries)
    errors = check_health_checks()
    assert errors and all(e.id == "zerodeploy.E040" for e in errors)
    assert any(fragment in e.msg for e in errors), [e.msg for e in errors]


def test_system_check_accepts_the_defaults_and_custom_entries(settings):
    assert check_health_checks() == []
    configure(
        settings,
        HEALTH_CHECKS=[
            "django_zerodeploy.health.DEFAULT_CHECKS",
            "tests.health.test_healthz.decorated",
        ],
    )
    assert check_health_checks() == []


def test_misconfigured_checks_fail_the_probe_without_saying_why(client, settings):
    configure(settings, HEALTH_CHECKS=["tests.health.test_healthz.does_not_exist"])
    response = get(client)
    assert response.status_code == 503
    assert json.loads(response.content) == {"status": "fail", "releaseId": boot_release()}
    doc = json.loads(get(client, token=TOKEN).content)
    assert "misconfigured" in doc["output"]


# -- the command --------------------------------------------------------------------------------
def run_command(*args: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    try:
        call_command("healthz", *args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_command_prints_the_checks(settings):
    configure(settings, HEALTH_CHECKS=[*ONLY_DB, "tests.health.test_healthz.decorated"])
    code, out, _ = run_command()
    assert code == 0
    assert "status: pass" in out and "database:responseTime[default]" in out
    assert "search:responseTime" in out and "(non-critical)" in out
    code, out, _ = run_command("--json")
    assert code == 0
    assert_health_json(json.loads(out), details=True)


def test_command_exits_1_when_failing_and_drains_and_resumes(settings):
    configure(settings, HEALTH_CHECKS=ONLY_DB)
    code, out, _ = run_command("--drain", "--reason", "maintenance")
    assert code == 0 and "Draining" in out
    assert health.is_draining()
    assert health.drain_state().reason == "maintenance"
    code, out, _ = run_command()
    assert code == 1
    assert "drain:draining" in out and "maintenance" in out
    code, out, _ = run_command("--resume")
    assert code == 0 and not health.is_draining()
    assert run_command()[0] == 0


def test_command_exits_2_on_bad_configuration(settings):
    configure(settings, HEALTH_CHECKS=["tests.health.test_healthz.does_not_exist"])
    code, _, err = run_command()
    assert code == 2 and "cannot import" in err


def test_command_exits_2_when_the_drain_flag_cannot_be_written(settings, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    configure(settings, RUNTIME_DIR=str(not_a_dir / "run"))
    code, _, err = run_command("--drain")
    assert code == 2 and "Cannot change the drain flag" in err


def test_the_drain_check_fails_when_the_runtime_dir_is_unsafe(tmp_path):
    runtime = tmp_path / "run"  # own_runtime's
    runtime.mkdir()
    os.chmod(runtime, 0o777)  # noqa: S103
    result = execute(DrainingCheck())
    assert result.status == "fail" and "Cannot use the runtime directory" in result.output
    with pytest.raises(CommandFailure) as refused:
        drain.set_draining(True, reason="maintenance")
    assert refused.value.exit_code == exit_codes.USAGE
    assert refused.value.message.startswith("Cannot change the drain flag: ")
