"""Short tasks run on one host through its own django-q2 cluster, and waited for.

``call(host, name)`` enqueues ``django_zerodeploy.rollout.remote.<name>`` routed to the queue
that host's cluster reads, then polls django-q2's result (saved in the shared database by that
cluster) until ROLLOUT_HOST_TIMEOUT. Whatever answers is that host: the drain flag it sets is
in *its* runtime directory.
"""

from __future__ import annotations

import time
from typing import Any

from ..conf import app_settings
from ..exit_codes import FAILED, CommandFailure
from ..proc import redact

TASKS = ("ping", "drain", "resume", "post_migrate")


class HostUnreachable(CommandFailure):
    """A host's cluster did not answer in time, or its task failed."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"host {host}: {message}", FAILED)
        self.host = host
        self.reason = message


def call(host: str, cluster: str, name: str, *args: Any, timeout: float | None = None) -> Any:
    """Run task ``name`` on ``host`` (its cluster reads ``cluster``); its return value."""
    from django_q.tasks import async_task, fetch

    if name not in TASKS:
        raise ValueError(name)
    limit = float(timeout if timeout is not None else app_settings.ROLLOUT_HOST_TIMEOUT)
    task_id = async_task(
        f"{__name__}.{name}", *args, cluster=cluster, task_name=f"rollout-{name}-{host}"[:100]
    )
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        task = fetch(task_id)
        if task is not None:
            if not task.success:
                raise HostUnreachable(host, f"its {name} task failed: {redact(str(task.result))}")
            return task.result
        time.sleep(0.2)
    raise HostUnreachable(
        host,
        f"its cluster (queue {cluster!r}) did not answer a {name} task within {limit:g} s; "
        f"is `Q_CLUSTER_NAME={cluster} python manage.py qcluster` running there?",
    )


# -- the tasks (run inside the host's cluster) ---------------------------------------------------
def ping() -> dict[str, Any]:
    """Who answers: the host's name, queue, checkout commit, HEALTHZ_URL and drain state."""
    from ..health.drain import is_draining
    from .hosts import cluster_queue, local_release, register

    register()
    return {
        "host": app_settings.host,
        "cluster": cluster_queue(),
        "release": local_release(),
        "healthz_url": app_settings.HEALTHZ_URL or "",
        "draining": is_draining(),
    }


def drain(reason: str = "") -> dict[str, Any]:
    """``healthz --drain`` on this host: /healthz/ answers 503 within HEALTHZ_CACHE_SECONDS."""
    from ..health.drain import set_draining
    from .hosts import register

    set_draining(True, reason=reason)
    register()
    return {"host": app_settings.host, "draining": True}


def resume() -> dict[str, Any]:
    """``healthz --resume`` on this host."""
    from ..health.drain import set_draining
    from .hosts import register

    set_draining(False)
    register()
    return {"host": app_settings.host, "draining": False}


def post_migrate() -> dict[str, Any]:
    """The post-deploy (contract) migrations, once every host serves the new release."""
    from .. import proc
    from ..pipeline.migrations import SAFETY_COMMAND, applied_from_output, safety_available
    from ..pipeline.project import Project

    if not safety_available():
        return {"host": app_settings.host, "applied": [], "skipped": "no safety command"}
    project = Project.current()
    result = proc.run(
        project.manage(project.repo_dir, SAFETY_COMMAND, "apply", "--stage", "post"),
        cwd=project.live_dir,
        env=project.env(project.repo_dir),
        timeout=float(app_settings.STEP_TIMEOUT),
    )
    if not result.ok:
        raise RuntimeError(f"post-deploy migrations failed: {result.last_lines(3)}")
    return {"host": app_settings.host, "applied": applied_from_output(result.stdout)}
