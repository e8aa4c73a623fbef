"""``manage.py deploy``: fetch, prepare beside the live tree, install, preflight, check out,
migrate, collect static files, smoke-test, reload Gunicorn and verify; roll back on failure.

Thin: it parses options and calls ``django_zerodeploy.pipeline``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.core.management.base import CommandParser

from ... import exit_codes, proc
from ...conf import app_settings
from ...config_snippets import CONFIG_KINDS
from ...exit_codes import CommandFailure
from ..base import ZeroDeployCommand

if TYPE_CHECKING:
    from ...pipeline import DeployOptions

EPILOG = """\
Steps: lock, environment, fetch, prepare (worktree beside the live tree, the live git-ignored
state linked in), install (only if a requirements file changed), collectstatic (only if static
sources changed), preflight (check, WSGI import, URLconf, migration plan, in the worktree),
checkout (git reset --keep, the branch stays checked out), migrate (only if migrations are
pending), smoke, reload, verify, post_migrate. A failure rolls back code, the exact package
set, static files and workers; applied migrations are listed, not reversed.

Exit codes:
  0  deployed, or nothing to deploy
  1  failed (or refused) and rolled back: the previous release serves
  2  bad usage, configuration or environment (nothing was changed)
  3  the site may be down or half-deployed and needs a person
  4  another deploy holds the lock

--check exits 0 when a deploy would work and 2 when a required piece is missing.
"""


# every option of the command: (flags, add_argument keyword arguments), in --help order
ARGUMENTS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (("--ref",), {"help": "Branch, tag or commit to deploy (default: REMOTE/BRANCH)."}),
    (
        ("--dry-run",),
        {
            "action": "store_true",
            "help": "Show commits, changed files, steps and pending migrations; change nothing.",
        },
    ),
    (
        ("--rollback",),
        {
            "nargs": "?",
            "const": True,
            "default": None,
            "metavar": "ID|COMMIT",
            "help": "Deploy an earlier successful release (default: the one before the current).",
        },
    ),
    (
        ("--force",),
        {
            "action": "store_true",
            "help": "Deploy even if the target already serves or was rolled back before.",
        },
    ),
    (
        ("--install",),
        {"action": "store_true", "help": "Install requirements even if unchanged."},
    ),
    (
        ("--collectstatic",),
        {"action": "store_true", "help": "Collect static files even if unchanged."},
    ),
    (
        ("--no-reload",),
        {
            "action": "store_true",
            "help": "Everything but the reload and verify (e.g. before Gunicorn first runs).",
        },
    ),
    (
        ("--wait-lock",),
        {
            "type": float,
            "default": 0,
            "metavar": "SECONDS",
            "help": "Wait this long for a running deploy instead of exiting 4 at once.",
        },
    ),
    (
        ("--no-input", "--noinput"),
        {"action": "store_false", "dest": "interactive", "help": "Never prompt (scripts, CI)."},
    ),
    (
        ("--json",),
        {
            "action": "store_true",
            "help": "Print the result (or the plan, or the history) as JSON on stdout.",
        },
    ),
    (("--history",), {"action": "store_true", "help": "List past deploys, newest first."}),
    (("--limit",), {"type": int, "default": 20, "help": "How many deploys --history lists."}),
    (
        ("--allow-unsafe-migrations",),
        {
            "action": "store_true",
            "help": "Acknowledge migrations the previous release cannot run against.",
        },
    ),
    (
        ("--check",),
        {
            "action": "store_true",
            "help": "Inspect this host's setup (Gunicorn, hook, middleware, URLs, runtime "
            "directory, systemd unit); print what is missing with the line to add. Exit 0 "
            "when a deploy would work, 2 when not. Changes nothing.",
        },
    ),
    (
        ("--print-config",),
        {
            "choices": CONFIG_KINDS,
            "metavar": "|".join(CONFIG_KINDS),
            "help": "Print a ready-to-use configuration snippet filled in from this project.",
        },
    ),
    (
        ("--init-releases",),
        {
            "metavar": "ROOT",
            "help": "Create the releases layout in ROOT (new or empty) from this in-place "
            "checkout: a first release of HEAD, its venv, shared/ with a copy of the "
            "git-ignored state, current; prints how to start Gunicorn from it. Changes "
            "nothing in this checkout.",
        },
    ),
    (
        ("--hosts",),
        {
            "nargs": "?",
            "const": "",
            "metavar": "all|HOST,HOST",
            "help": "Roll the release out to these registered hosts (or all), batch by batch, "
            "each drained while it reloads, through its own django-q2 cluster.",
        },
    ),
    (
        ("--batch",),
        {"type": int, "default": 1, "help": "Hosts per batch of a rollout (default 1)."},
    ),
    (("--list",), {"action": "store_true", "help": "With --hosts: list the registered hosts."}),
    (
        ("--keep-switched",),
        {
            "action": "store_true",
            "help": "When a rollout stops, leave the hosts already switched on the new release.",
        },
    ),
    (
        ("--check-migrations",),
        {
            "action": "store_true",
            "help": "Only classify the pending migrations of the current code (for CI) "
            "and exit with that check's code.",
        },
    ),
)


class Command(ZeroDeployCommand):
    help = "Deploy the newest commit of the upstream branch (or --ref) with zero downtime."
    epilog = EPILOG  # the new code is checked in the preflight step, not by Django's checks

    def add_arguments(self, parser: CommandParser) -> None:
        """The options live in one table, so each reads as data rather than a call."""
        for flags, kwargs in ARGUMENTS:
            parser.add_argument(*flags, **kwargs)

    def run(self, options: dict[str, Any]) -> int:
        shown = self._other_action(options)
        if shown is not None:
            return shown
        deploy = _deploy_options(options)
        if deploy.dry_run:
            return self._dry_run(deploy, as_json=options["json"])
        if not self._confirmed(deploy, options):
            self.stderr.write("Cancelled; nothing was changed.")
            return exit_codes.USAGE
        return self._deploy(deploy, as_json=options["json"])

    def _other_action(self, options: dict[str, Any]) -> int | None:
        """The options that do something other than a deploy; None when none was given."""
        from ...pipeline import history
        from ...pipeline.deploy_history import history_table

        as_json = options["json"]
        if options["history"]:
            rows = history(max(options["limit"], 0))
            self.stdout.write(json.dumps(rows, indent=2) if as_json else history_table(rows))
            if not as_json:
                self._rollout_history(options["limit"])
            return exit_codes.OK
        if options["check"]:
            from ...setup_check import check_setup

            report = check_setup()
            self.stdout.write(
                json.dumps(report.as_dict(), indent=2) if as_json else report.as_text()
            )
            return report.exit_code
        if options["print_config"]:
            from ...config_snippets import render

            self.stdout.write(render(options["print_config"]), ending="")
            return exit_codes.OK
        if options["check_migrations"]:
            return self._check_migrations(options)
        if options["init_releases"]:
            return self._init_releases(Path(options["init_releases"]))
        if options["hosts"] is not None:
            return self._rollout(options)
        return None

    def _dry_run(self, deploy: DeployOptions, *, as_json: bool) -> int:
        """Print the plan; exit as the deploy would when it would refuse, else 0."""
        from ...pipeline import build_plan

        plan = build_plan(deploy)
        self.stdout.write(json.dumps(plan.as_dict(), indent=2) if as_json else plan.as_text())
        # what the deploy would return when it would refuse; a running deploy is only a note
        refused = plan.problems or plan.refused or plan.migration_errors
        return plan.exit_code if refused else exit_codes.OK

    def _confirmed(self, deploy: DeployOptions, options: dict[str, Any]) -> bool:
        """A person at a terminal confirms --force and --rollback; scripts are never asked."""
        if not (
            (deploy.force or deploy.rollback)
            and options["interactive"]
            and sys.stdin.isatty()
            and not options["json"]
        ):
            return True
        what = (
            "roll back"
            if deploy.rollback
            else "deploy with --force (even a release rolled back before)"
        )
        answer = input(f"Really {what}? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    def _deploy(self, deploy: DeployOptions, *, as_json: bool) -> int:
        """Run the pipeline; with --json, stdout carries only the JSON result."""
        from ...pipeline import run_deploy

        def echo(line: str) -> None:
            # with --json, stdout carries only the JSON: progress goes to stderr
            stream = sys.stderr if as_json else sys.stdout
            stream.write(line + "\n")
            stream.flush()

        result = run_deploy(deploy, echo=echo)
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        return result.exit_code

    def _init_releases(self, root: Path) -> int:
        from ...pipeline.steps.release import requirement_files
        from ...releases.init import init_releases

        def echo(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        result = init_releases(
            root,
            checkout=app_settings.repo_dir,
            python=sys.executable,
            requirement_files=requirement_files,
            echo=echo,
            timeout=float(app_settings.STEP_TIMEOUT),
        )
        self.stdout.write(result.instructions())
        return exit_codes.OK

    def _rollout_history(self, limit: int) -> None:
        """Rollouts below the deploys, with each host's state and deploy (when there are any)."""
        from ...rollout.records import rollout_history, rollouts_table

        rows = rollout_history(max(limit, 0))
        if rows:
            self.stdout.write("\nRollouts across hosts:\n" + rollouts_table(rows))

    def _rollout(self, options: dict[str, Any]) -> int:
        """``--hosts``: list the registry, or run the rollout coordinator."""
        from ...osutil import os_user
        from ...rollout.coordinator import RolloutOptions, run_rollout
        from ...rollout.hosts import hosts_table, registered_hosts

        as_json = options["json"]
        if options["list"]:
            hosts = registered_hosts()
            self.stdout.write(
                json.dumps([h.as_dict() for h in hosts], indent=2)
                if as_json
                else hosts_table(hosts)
            )
            return exit_codes.OK
        if not options["hosts"]:
            raise CommandFailure(
                "--hosts needs 'all' or host names (a,b), or --list.", exit_codes.USAGE
            )
        rollout = RolloutOptions(
            hosts=options["hosts"],
            batch=options["batch"],
            ref=options["ref"],
            keep_switched=options["keep_switched"],
            username=os_user(),
        )
        stream = sys.stderr if as_json else sys.stdout
        result = run_rollout(rollout, echo=lambda line: print(line, file=stream, flush=True))
        if as_json:
            self.stdout.write(json.dumps(result.as_dict(), indent=2))
        elif result.exit_code:
            self.stderr.write(result.message)
        return result.exit_code

    def _check_migrations(self, options: dict[str, Any]) -> int:
        """``zerodeploy_migrations plan`` on the current code, in its own interpreter."""
        from ...pipeline.migrations import SAFETY_COMMAND, safety_available
        from ...pipeline.project import Project

        if not safety_available():
            raise CommandFailure(
                f"The migration safety command ({SAFETY_COMMAND}) is not installed.",
                exit_codes.USAGE,
            )
        project = Project.current()
        args = project.manage(project.repo_dir, SAFETY_COMMAND, "plan")
        if options["json"]:
            args.append("--json")
        if options["allow_unsafe_migrations"]:
            args.append("--allow-unsafe")
        result = proc.run(
            args,
            cwd=project.live_dir,
            env=project.env(project.repo_dir),
            timeout=float(app_settings.STEP_TIMEOUT),
        )
        if result.stdout:
            self.stdout.write(result.stdout.rstrip("\n"))
        if result.stderr:
            self.stderr.write(result.stderr.rstrip("\n"))
        if result.timed_out:  # killed: its return code is a signal, not the check's answer
            return exit_codes.FAILED
        return result.returncode


def _deploy_options(options: dict[str, Any]) -> DeployOptions:
    """The pipeline's options from the parsed ones (a bad ref or --ref with --rollback: exit 2)."""
    from ...pipeline import DeployOptions

    # usage errors (a bad ref, --ref with --rollback): one line on stderr, exit 2
    return DeployOptions(
        ref=options["ref"],
        force=options["force"],
        install=options["install"],
        collectstatic=options["collectstatic"],
        no_reload=options["no_reload"],
        dry_run=options["dry_run"],
        rollback=options["rollback"],
        wait_lock=options["wait_lock"],
        trigger="cli",
        allow_unsafe_migrations=options["allow_unsafe_migrations"],
    )
