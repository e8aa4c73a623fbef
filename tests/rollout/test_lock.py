"""The rollout lock and the rollout's settings: one rollout at a time across hosts (a row in
the shared database), a dead coordinator's stale row taken over exactly once, the drain wait's
formula, and the usage errors of ``deploy --hosts``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from django_zerodeploy import exit_codes
from django_zerodeploy.conf import app_settings, validate
from django_zerodeploy.exit_codes import CommandFailure
from django_zerodeploy.models import Host, Rollout, RolloutLock
from django_zerodeploy.rollout import lock
from django_zerodeploy.rollout.coordinator import RolloutOptions, run_rollout, select_hosts

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_second_rollout_is_refused_naming_the_running_one():
    first, second = Rollout.objects.create(), Rollout.objects.create()
    assert lock.acquire(first).taken_over is None
    with pytest.raises(CommandFailure) as refused:
        lock.acquire(second)
    assert refused.value.exit_code == exit_codes.LOCKED
    assert f"Rollout #{first.pk} is running" in refused.value.message
    lock.release(first)
    assert lock.acquire(second).rollout_id == second.pk


def test_a_stale_lock_is_taken_over_once_and_names_the_interrupted_rollout():
    dead, next_one, third = (Rollout.objects.create() for _ in range(3))
    lock.acquire(dead)
    RolloutLock.objects.update(heartbeat_at=timezone.now() - lock.STALE - timedelta(seconds=1))
    assert lock.acquire(next_one).taken_over == dead.pk
    with pytest.raises(CommandFailure):  # the takeover refreshed it: no second winner
        lock.acquire(third)


def test_the_heartbeat_keeps_the_lock_fresh(monkeypatch):
    monkeypatch.setattr(lock, "HEARTBEAT", 0.05)
    record = Rollout.objects.create()
    lock.acquire(record)
    old = timezone.now() - timedelta(minutes=5)
    RolloutLock.objects.update(heartbeat_at=old)
    with lock.Heartbeat(record):
        deadline = timezone.now() + timedelta(seconds=5)
        while RolloutLock.objects.get().heartbeat_at == old and timezone.now() < deadline:
            pass
    assert RolloutLock.objects.get().heartbeat_at > old


def test_a_rollout_refused_by_the_lock_is_recorded_and_exits_4():
    Host.objects.create(name="web1", cluster="deploy-web1", heartbeat_at=timezone.now())
    lock.acquire(Rollout.objects.create())
    with pytest.raises(CommandFailure) as refused:
        run_rollout(RolloutOptions(hosts="all"), echo=lambda line: None)
    assert refused.value.exit_code == exit_codes.LOCKED
    assert Rollout.objects.filter(status=Rollout.Status.REFUSED).count() == 1


def test_unknown_hosts_are_a_usage_error():
    Host.objects.create(name="web1", cluster="deploy-web1")
    with pytest.raises(CommandFailure) as bad:
        select_hosts("web1,web9")
    assert bad.value.exit_code == exit_codes.USAGE and "web9" in bad.value.message
    assert [h.name for h in select_hosts("all")] == ["web1"]


def test_deploy_hosts_without_names_exits_2(capsys):
    with pytest.raises(SystemExit) as exited:
        call_command("deploy", "--hosts")
    assert exited.value.code == exit_codes.USAGE
    assert "--hosts needs 'all'" in capsys.readouterr().err


def test_drain_seconds_default_follows_the_formula():
    with override_settings(ZERODEPLOY={"LB_CHECK_INTERVAL": 0.5, "LB_FALL": 4}):
        assert app_settings.drain_seconds == 0.5 * 4 + app_settings.HEALTHZ_CACHE_SECONDS + 1
    with override_settings(ZERODEPLOY={"DRAIN_SECONDS": 3}):
        assert app_settings.drain_seconds == 3.0


def test_host_sets_the_default_cluster_name():
    with override_settings(ZERODEPLOY={"HOST": "web2"}):
        assert app_settings.host == "web2" and app_settings.cluster_name == "deploy-web2"
    with override_settings(ZERODEPLOY={"HOST": "web2", "Q_CLUSTER_NAME": "q-web2"}):
        assert app_settings.cluster_name == "q-web2"
    with override_settings(ZERODEPLOY={}):
        assert app_settings.cluster_name is None  # one cluster takes every deploy, as before


def test_a_host_name_with_a_slash_is_a_settings_error():
    problems = validate({"HOST": "web/1"})
    assert [p[1] for p in problems] == ["zerodeploy.E005"]


def test_history_lists_rollouts_with_each_host_and_its_deploy(capsys):
    from django_zerodeploy.models import Deployment

    rollout = Rollout.objects.create(
        status=Rollout.Status.ROLLED_BACK,
        previous_sha="a" * 40,
        target_sha="b" * 40,
        batches=[["web1"], ["web2"], ["web3"]],
        progress={"web1": "rolled back", "web2": "failed (#2, failed)", "web3": "untouched"},
        message="Rollout stopped at web2: deploy #2 failed: Smoke: / answered 500",
    )
    for host in ("web1", "web2"):
        Deployment.objects.create(host=host, rollout=rollout, status=Deployment.Status.FAILED)
    call_command("deploy", "--history")
    out = capsys.readouterr().out
    assert "Rollouts across hosts:" in out and "Rollout stopped at web2" in out
    web2 = Deployment.objects.get(host="web2").pk
    assert f"batch 2 web2: failed (#2, failed) (deploy #{web2})" in out
    assert "batch 3 web3: untouched\n" in out + "\n"


def test_a_batch_never_drains_every_host_of_the_pool():
    from django_zerodeploy.rollout.coordinator import batch_size

    assert batch_size(2, alive_hosts=3) == 2
    assert batch_size(2, alive_hosts=2) == 1  # both drained: HAProxy would have no server
    assert batch_size(5, alive_hosts=1) == 1  # a lone host is deployed without draining
