"""What the steps of one deploy share: the options, the commits, the paths and what was done so
far (which the rollback reads to know what to undo)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import exit_codes
from ..exit_codes import CommandFailure
from ..git import Commit, Git
from ..migration_safety import PendingMigration
from ..releases.layout import Release, ReleasesRoot
from .project import Project, current_layout

if TYPE_CHECKING:
    from ..gunicorn import Master
    from ..models import Deployment
    from ..shared_paths import SharedPaths
    from .lock import DeployLock
    from .options import DeployOptions
    from .packages import Snapshot


class StepFailed(Exception):
    """A step failed. ``exit_code`` is what the command returns if rollback succeeds (or if
    nothing needed rolling back)."""

    def __init__(
        self,
        message: str,
        *,
        output: str = "",
        returncode: int | None = None,
        exit_code: int = exit_codes.FAILED,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.output = output
        self.returncode = returncode
        self.exit_code = exit_code


class NothingToDeploy(Exception):
    """The target already serves: stop here with exit code 0."""


@dataclass
class Outcome:
    """What a step did: a one-line detail for the table, and its captured output."""

    detail: str = ""
    output: str = ""
    returncode: int | None = None


@dataclass
class PlannedStep:
    """What a step would do (``Step.plan``, for the dry run): ``facts`` are the same facts as
    ``reason``, for ``--json`` and the admin."""

    name: str
    run: bool
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class DeployContext:
    options: DeployOptions
    project: Project
    git: Git
    echo: Callable[[str], None]
    deployment: Deployment | None = None
    lock: DeployLock | None = None
    # opens the deploy's record (OpenRecordStep): the runner's, which keeps the record
    open_record: Callable[[], None] = lambda: None
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    fetch: bool = True  # False: use the refs fetched last (the dry run while a deploy runs)

    # what is live before the deploy
    branch: str | None = None
    remote: str = "origin"
    remote_branch: str | None = None
    head_sha: str | None = None
    serving: set[str] = field(default_factory=set)
    serving_source: str = ""  # "workers", "healthz" or "HEAD"
    previous_sha: str | None = None  # the release to roll back to
    master: Master | None = None  # when Gunicorn runs
    interrupted: list[int] = field(default_factory=list)  # ids of deploys found killed

    # the target
    ref: str = ""
    target_sha: str | None = None
    target_subject: str = ""
    commits: list[Commit] = field(default_factory=list)
    changed_files: list[str] = field(default_factory=list)
    baselines: set[str] = field(default_factory=set)  # releases the live state may hold
    unknown_baseline: bool = False  # a baseline git cannot diff: assume everything changed
    worktree: Path | None = None
    shared: SharedPaths | None = None  # live state linked into the worktree

    # what the new release needs
    pending: list[PendingMigration] = field(default_factory=list)
    migration_errors: list[str] = field(default_factory=list)
    unsafe_acknowledged: bool = False
    smoke_done: bool = False

    # what has been done (read by the rollback)
    installed: bool = False
    packages_before: Snapshot | None = None  # taken before pip install
    checked_out: bool = False
    collected: bool = False
    manifest_saved: bool = False  # previous_manifest holds STATIC_ROOT's manifest before collect
    previous_manifest: bytes | None = None  # None: there was none
    reload_attempted: bool = False
    reloaded: bool = False
    reload_hooked: bool = True  # False: Gunicorn runs without our readiness hook
    applied_migrations: list[str] = field(default_factory=list)
    mixed_window_started: float | None = None
    mixed_window: float | None = None

    # the releases layout (pipeline/steps/releases_*.py): the release being built and the live one
    releases: ReleasesRoot | None = None
    release: Release | None = None  # the new release
    live_project: Project | None = None  # the release that served when the deploy started
    venv_key: str = ""
    venv_built: bool = False
    switched: bool = False

    @property
    def live_changed(self) -> bool:
        """Did the deploy change anything live (code, packages, static files, workers): the
        rollback has something to undo."""
        return self.checked_out or self.installed or self.collected or self.reloaded

    @property
    def live(self) -> Path:
        return self.project.repo_dir

    def releases_root(self) -> ReleasesRoot:
        """ROOT of the releases layout this deploy runs in (a usage error elsewhere)."""
        if self.releases is None:
            layout = current_layout()
            if layout.root is None:
                raise CommandFailure(
                    f"{self.live} is not a release of the releases layout.", exit_codes.USAGE
                )
            self.releases = layout.root
        return self.releases

    @property
    def pending_pre(self) -> list[PendingMigration]:
        return [m for m in self.pending if m.stage != "post"]

    @property
    def pending_post(self) -> list[PendingMigration]:
        return [m for m in self.pending if m.stage == "post"]

    @property
    def new_code(self) -> Path:
        """The tree holding the target's code now: the worktree until checkout, then live."""
        if self.checked_out or self.worktree is None:
            return self.live
        return self.worktree
