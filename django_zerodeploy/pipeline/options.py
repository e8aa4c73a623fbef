"""What a deploy is asked to do and what it answers: ``DeployOptions`` in, ``DeployResult`` out.

Every entry (the command, the admin, the webhook's task, a test) builds a ``DeployOptions``, so
the options are checked once, when they are made: a bad ref, a negative ``wait_lock`` or
``--ref`` with ``--rollback`` is a usage error (exit 2) before anything runs, and the pipeline
never sees options it would have to check again."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..git import GitError, validate_ref


@dataclass(frozen=True)
class DeployOptions:
    """What to deploy and how; the command-line options, one field each. Frozen and checked on
    creation (``validate_options``): raises ``CommandFailure`` with ``exit_codes.USAGE``."""

    ref: str | None = None
    force: bool = False
    install: bool = False
    collectstatic: bool = False
    no_reload: bool = False
    dry_run: bool = False
    rollback: str | bool | None = None  # True: the release before the current one
    wait_lock: float = 0
    trigger: str = "cli"
    user_id: int | None = None
    username: str = ""
    allow_unsafe_migrations: bool = False
    # a rollout runs the post-deploy migrations once, after every host serves the release
    skip_post_migrate: bool = False

    def __post_init__(self) -> None:
        validate_options(self)


def validate_options(options: DeployOptions) -> None:
    """Usage errors, before anything runs (``DeployOptions`` calls it on creation)."""
    try:
        if options.ref:
            validate_ref(options.ref)
        if isinstance(options.rollback, str) and options.rollback:
            validate_ref(options.rollback)
    except GitError as exc:
        raise CommandFailure(str(exc), exit_codes.USAGE) from None
    if options.ref and options.rollback:
        raise CommandFailure("--ref and --rollback cannot be used together.", exit_codes.USAGE)
    if options.wait_lock < 0:
        raise CommandFailure("--wait-lock must not be negative.", exit_codes.USAGE)


@dataclass
class DeployResult:
    """The outcome: ``exit_code`` is what ``manage.py deploy`` exits with."""

    exit_code: int
    status: str
    message: str
    deployment_id: int | None
    target_sha: str | None
    previous_sha: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    mixed_window: float | None = None
    applied_migrations: list[str] = field(default_factory=list)
    duration: float | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["duration"] is not None:
            data["duration"] = round(data["duration"], 3)
        if data["mixed_window"] is not None:
            data["mixed_window"] = round(data["mixed_window"], 3)
        return data
