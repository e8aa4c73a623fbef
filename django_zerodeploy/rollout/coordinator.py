"""The rollout coordinator: deploy hosts batch by batch, each out of the load balancer while
its Gunicorn reloads, through its own django-q2 cluster; stop at the first failure.

Runs on any host (``manage.py deploy --hosts``, or the admin's task). It changes nothing on a
host itself: every drain, deploy and resume is a task routed to that host's cluster, and each
host's deploy is the single-host pipeline, unchanged, into its own ``Deployment`` row.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .. import exit_codes
from ..conf import app_settings
from ..exit_codes import CommandFailure
from ..healthz_url import release_id
from ..models import Deployment, Rollout
from . import lock, remote
from .hosts import HostInfo, registered_hosts

Echo = Callable[[str], None]
DONE_STATUSES = (Deployment.Status.SUCCEEDED, Deployment.Status.NOTHING)


@dataclass
class RolloutOptions:
    hosts: str = "all"  # "all" or "a,b"
    batch: int = 1
    ref: str | None = None
    keep_switched: bool = False
    trigger: str = "cli"
    username: str = ""


@dataclass
class RolloutResult:
    exit_code: int
    status: str
    message: str
    rollout_id: int | None
    target_sha: str = ""
    previous_sha: str = ""
    progress: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class HostFailed(Exception):
    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"host {host}: {reason}")
        self.host, self.reason = host, reason


def select_hosts(spec: str) -> list[HostInfo]:
    """The target hosts, in name order; an unknown name is a usage error (exit 2)."""
    known = {h.name: h for h in registered_hosts()}
    if spec.strip() == "all":
        if not known:
            raise CommandFailure(
                "No host is registered: start each host's cluster (python manage.py qcluster).",
                exit_codes.USAGE,
            )
        return list(known.values())
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise CommandFailure(
            f"Unknown host(s) {', '.join(unknown) or spec!r}; registered: "
            f"{', '.join(known) or 'none'} (deploy --hosts --list).",
            exit_codes.USAGE,
        )
    return [known[n] for n in dict.fromkeys(names)]


def batch_size(requested: int, alive_hosts: int) -> int:
    """Hosts per batch: as asked, but never every host of the pool at once (at least one keeps
    serving while a batch is drained)."""
    return max(1, min(requested, alive_hosts - 1))


def run_rollout(options: RolloutOptions, echo: Echo = print) -> RolloutResult:
    """Roll the release out. Expected failures come back as a result with an exit code."""
    if options.batch < 1:
        raise CommandFailure("--batch must be at least 1.", exit_codes.USAGE)
    targets = select_hosts(options.hosts)
    record = Rollout.objects.create(
        trigger=options.trigger,
        username=options.username,
        coordinator=lock.holder_name(),
        ref=options.ref or "",
        batch_size=options.batch,
        keep_switched=options.keep_switched,
        progress={h.name: "pending" for h in targets},
    )
    try:
        acquired = lock.acquire(record)
    except CommandFailure as exc:
        _finish(record, Rollout.Status.REFUSED, exc.message)
        raise
    try:
        with lock.Heartbeat(record):
            if acquired.taken_over:
                recover(acquired.taken_over, echo)
            return Coordinator(record, targets, options, echo).run()
    finally:
        lock.release(record)


def _finish(record: Rollout, status: str, message: str) -> None:
    record.status, record.message, record.finished_at = status, message[:2000], timezone.now()
    record.save(update_fields=["status", "message", "finished_at", "progress"])


class Coordinator:
    def __init__(
        self, record: Rollout, targets: list[HostInfo], options: RolloutOptions, echo: Echo
    ) -> None:
        self.record, self.targets, self.options, self.echo = record, targets, options, echo
        self.by_name = {h.name: h for h in targets}
        self.switched: list[str] = []

    def state(self, host: str, value: str) -> None:
        self.record.progress[host] = value
        self.record.save(update_fields=["progress"])
        self.echo(f"  {host}: {value}")

    def run(self) -> RolloutResult:
        try:
            self.preconditions()
        except HostFailed as exc:
            message = f"Refused, nothing was changed: {exc}"
            _finish(self.record, Rollout.Status.REFUSED, message)
            return self._result(exit_codes.FAILED, message)
        names = [h.name for h in self.targets]
        size = batch_size(self.options.batch, len([h for h in registered_hosts() if h.alive]))
        if size != self.options.batch:
            self.echo(f"Batches of {size}: a batch never drains every host of the pool.")
        self.record.batches = [names[i : i + size] for i in range(0, len(names), size)]
        self.record.save(update_fields=["batches", "previous_sha"])
        try:
            for number, batch in enumerate(self.record.batches, 1):
                self.echo(f"Batch {number}/{len(self.record.batches)}: {', '.join(batch)}")
                self.run_batch(batch)
            self.post_migrate()
        except HostFailed as exc:
            return self.stop(exc)
        message = (
            f"Rolled out {self.record.target_sha[:10]} to {len(names)} host(s): {', '.join(names)}."
        )
        _finish(self.record, Rollout.Status.SUCCEEDED, message)
        self.echo(message)
        return self._result(exit_codes.OK, message)

    def _result(self, code: int, message: str) -> RolloutResult:
        r = self.record
        return RolloutResult(
            code, r.status, message, r.pk, r.target_sha, r.previous_sha, dict(r.progress)
        )

    # -- before anything changes -----------------------------------------------------------
    def preconditions(self) -> None:
        """Every host answers through its own cluster, none drains, all serve one release."""
        answers = {}
        for host in self.targets:
            if not host.cluster:
                raise HostFailed(host.name, "its cluster never registered a queue name")
            try:
                answers[host.name] = remote.call(host.name, host.cluster, "ping")
            except remote.HostUnreachable as exc:
                raise HostFailed(host.name, exc.reason) from None
        for name, answer in answers.items():
            if answer.get("host") != name:
                raise HostFailed(
                    name,
                    f"its queue {self.by_name[name].cluster!r} was answered by host "
                    f"{answer.get('host')!r}: give each host's cluster its own Q_CLUSTER_NAME",
                )
            if answer.get("draining"):
                raise HostFailed(name, "it is drained (manage.py healthz --resume there)")
        releases = {name: a.get("release", "") for name, a in answers.items()}
        if len(set(releases.values())) != 1:
            listed = ", ".join(f"{n} {r[:10] or '?'}" for n, r in releases.items())
            odd = sorted(releases, key=lambda n: list(releases.values()).count(releases[n]))[0]
            raise HostFailed(odd, f"the hosts serve different releases ({listed})")
        self.record.previous_sha = next(iter(releases.values()))

    # -- one batch -------------------------------------------------------------------------
    def run_batch(self, batch: list[str]) -> None:
        if len([h for h in registered_hosts() if h.alive]) > 1:
            for name in batch:
                self.call(name, "drain", f"rollout #{self.record.pk}")
                self.state(name, "drained")
            self.echo(f"  waiting {app_settings.drain_seconds:g} s for the load balancer (drain)")
            time.sleep(app_settings.drain_seconds)
        else:  # draining the only host would leave the balancer nothing to send requests to
            self.echo("  one host: not drained (its own reload keeps it serving)")
        first, rest = batch[0], batch[1:]
        if not self.record.target_sha:  # the first host migrates (pre-deploy) and resolves it
            self.deploy([first])
            first, rest = None, rest
        self.deploy([n for n in ([first] if first else []) + rest])
        for name in batch:
            self.verify(name)
            self.call(name, "resume")
            self.state(name, "switched")
        self.echo(f"  waiting {app_settings.rise_seconds:g} s for the load balancer (rise)")
        time.sleep(app_settings.rise_seconds)

    def call(self, name: str, task: str, *args: Any) -> Any:
        host = self.by_name[name]
        try:
            return remote.call(name, host.cluster, task, *args)
        except remote.HostUnreachable as exc:
            raise HostFailed(name, exc.reason) from None

    def deploy(self, names: list[str], *, rollback: bool = False) -> None:
        """Queue one deploy per host (through its cluster) and wait for all of them."""
        if not names:
            return
        from ..tasks.queue import queue_deployment

        options: dict[str, Any] = {"skip_post_migrate": True}
        if rollback:
            options.update(ref=self.record.previous_sha, force=True)
        elif self.record.target_sha:
            options["ref"] = self.record.target_sha
        elif self.options.ref:
            options["ref"] = self.options.ref
        records = {}
        for name in names:
            records[name] = queue_deployment(
                trigger=Deployment.Trigger.ROLLOUT,
                username=self.options.username,
                ref=options.get("ref") or "",
                options=options,
                host=name,
                cluster=self.by_name[name].cluster,
                rollout=self.record,
            )
            if not rollback:
                self.state(name, f"deploying (#{records[name].pk})")
        failures = []
        for name, record in records.items():
            done = wait_deployment(record.pk)
            if done.status not in DONE_STATUSES:
                failures.append((name, done))
            elif not rollback:
                self.deployed(name, done)
        if failures:
            name, done = failures[0]
            self.state(name, f"failed (#{done.pk}, {done.status})")
            raise HostFailed(name, f"deploy #{done.pk} {done.status}: {done.message.strip()}")

    def deployed(self, name: str, done: Deployment) -> None:
        """The host serves the target from now on: a later stop must put it back, whether
        its batch-mate fails, its own verify does, or a later batch."""
        self.switched.append(name)
        self.state(name, f"deployed (#{done.pk})")
        if not self.record.target_sha:
            self.record.target_sha = done.target_sha
            self.record.save(update_fields=["target_sha"])

    def verify(self, name: str) -> None:
        url = self.by_name[name].healthz_url
        if not url:
            return  # the host's own verify step checked its workers' reports
        seen = release_id(url, timeout=5.0) or ""
        if seen != self.record.target_sha:
            self.state(name, "failed (verify)")
            raise HostFailed(name, f"{url} reports release {seen or 'none'}, not the target")

    def post_migrate(self) -> None:
        last = self.targets[-1]
        try:
            remote.call(
                last.name, last.cluster, "post_migrate", timeout=float(app_settings.STEP_TIMEOUT)
            )
        except remote.HostUnreachable as exc:
            raise HostFailed(last.name, f"post-deploy migrations: {exc.reason}") from None

    # -- stopping --------------------------------------------------------------------------
    def stop(self, failure: HostFailed) -> RolloutResult:
        """A host whose deploy failed rolled back by itself; every host whose deploy succeeded
        (resumed or not yet) goes back unless kept; resume every other host this rollout
        drained; hosts not reached stay untouched."""
        self.echo(f"Stopped: {failure}")
        progress = self.record.progress
        undo = [] if self.options.keep_switched else list(self.switched)
        touched = [n for n, s in progress.items() if s not in ("pending", "switched")]
        touched = [n for n in touched if n not in undo]
        if undo:
            undo_hosts(self, undo)
        for name in touched:
            try:
                self.call(name, "resume")
            except HostFailed as exc:
                self.echo(f"  warning: {exc}")
        for name, value in progress.items():
            if value == "pending":
                self.state(name, "untouched")
        kept = " (switched hosts kept: --keep-switched)" if self.options.keep_switched else ""
        message = f"Rollout stopped at {failure.host}: {failure.reason}{kept}"
        status = Rollout.Status.FAILED if self.options.keep_switched else Rollout.Status.ROLLED_BACK
        _finish(self.record, status, message)
        return self._result(exit_codes.FAILED, message)


def undo_hosts(coordinator: Coordinator, names: list[str]) -> None:
    """Put ``names`` back on the rollout's previous release, each out of rotation."""
    for name in names:
        coordinator.call(name, "drain", f"rollout #{coordinator.record.pk}: rolling back")
        coordinator.state(name, "drained (rolling back)")
    time.sleep(app_settings.drain_seconds)
    coordinator.deploy(names, rollback=True)
    for name in names:
        coordinator.call(name, "resume")
        coordinator.state(name, "rolled back")


def wait_deployment(pk: int, poll: float = 0.5) -> Deployment:
    """Until the host's deploy record finishes (its own steps have timeouts)."""
    while True:
        record = Deployment.objects.get(pk=pk)
        if record.is_finished:
            return record
        time.sleep(poll)


def recover(rollout_id: int, echo: Echo) -> None:
    """A coordinator died holding the lock: mark its rollout interrupted, wait for the deploys
    it had queued, put its switched hosts back on its previous release and resume them."""
    old = Rollout.objects.get(pk=rollout_id)
    echo(f"Rollout #{old.pk} was interrupted (coordinator {old.coordinator}): undoing it first.")
    for record in old.deployments.all():
        if not record.is_finished:
            wait_deployment(record.pk)
    targets = [h for h in registered_hosts() if h.name in old.progress]
    options = RolloutOptions(hosts=",".join(old.progress), keep_switched=False, trigger=old.trigger)
    undo = Coordinator(old, targets, options, echo)
    done = {d.host for d in old.deployments.filter(status__in=DONE_STATUSES)}
    switched = [n for n, s in old.progress.items() if s == "switched" or n in done]
    if switched and old.previous_sha:
        undo_hosts(undo, switched)
    for name, state in old.progress.items():
        if state not in ("pending", "untouched") and name not in switched:
            undo.call(name, "resume")
    _finish(old, Rollout.Status.INTERRUPTED, (old.message + " Interrupted; undone.").strip())
