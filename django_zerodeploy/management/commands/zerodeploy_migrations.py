"""``manage.py zerodeploy_migrations plan|apply``: the migration half of a deploy.

The deploy pipeline runs ``plan --json`` in the new release's worktree before anything
changes, ``apply --stage pre`` as its migrate step and ``apply --stage post`` after the reload.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from ...exit_codes import EPILOG, FAILED, OK, USAGE, CommandFailure
from ...migration_safety import PlanError
from ...migration_safety.apply import apply_stage
from ...migration_safety.plan import classify_pending
from ...migration_safety.report import plan_json, plan_table, refusal_message, warnings_text
from ..base import ZeroDeployCommand


class Command(ZeroDeployCommand):
    help = (
        "Classify pending migrations for a zero-downtime deploy (plan), or apply one stage of "
        "them with PostgreSQL lock timeouts (apply --stage pre|post)."
    )
    epilog = (
        "plan exits 1 when an unsafe operation is not acknowledged or a pre-deploy migration "
        "depends on a post-deploy one. " + EPILOG
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="plan|apply")
        plan = sub.add_parser("plan", help="Classify every pending operation; refuse unsafe ones.")
        plan.add_argument("--json", action="store_true", help="Print the plan as JSON on stdout.")
        plan.add_argument(
            "--allow-unsafe", action="store_true", help="Acknowledge unsafe operations."
        )
        plan.add_argument("--database", default=DEFAULT_DB_ALIAS)
        apply = sub.add_parser("apply", help="Apply the pending migrations of one stage.")
        apply.add_argument("--stage", required=True, choices=["pre", "post"])
        apply.add_argument(
            "--lock-timeout", help="PostgreSQL lock_timeout, e.g. 5s, 500ms (numbers are seconds)."
        )
        apply.add_argument("--statement-timeout", help="PostgreSQL statement_timeout (0: none).")
        apply.add_argument(
            "--retries", type=int, help="Attempts in all when the lock timeout hits."
        )
        apply.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def run(self, options: dict[str, Any]) -> int:
        try:
            if options["action"] == "plan":
                return self._plan(options, options.get("json", False))
            return self._apply(options)
        except PlanError as exc:
            raise CommandFailure(str(exc), USAGE) from exc
        except DatabaseError as exc:
            raise CommandFailure(
                f"Cannot read the migration state of the database: {exc}".strip(), USAGE
            ) from exc

    def fail(self, message: str, code: int, options: dict[str, Any]) -> int:
        if options.get("json", False):
            self.stdout.write(
                json.dumps(
                    {
                        "pending": [],
                        "unsafe": [],
                        "errors": [message],
                        "refused": True,
                        "message": message,
                    }
                )
            )
        self.stderr.write(message)
        return code

    def _plan(self, options: dict[str, Any], as_json: bool) -> int:
        plan = classify_pending(options["database"], allow_unsafe=options["allow_unsafe"])
        if as_json:
            self.stdout.write(json.dumps(plan_json(plan), indent=2))
        else:
            self.stdout.write(plan_table(plan))
            warnings = warnings_text(plan)
            if warnings:
                self.stdout.write(warnings)
        if plan.refused:
            if not as_json:
                self.stderr.write(refusal_message(plan))
            return FAILED
        return OK

    def _apply(self, options: dict[str, Any]) -> int:
        result = apply_stage(
            options["stage"],
            database=options["database"],
            lock_timeout=options["lock_timeout"],
            statement_timeout=options["statement_timeout"],
            retries=options["retries"],
            on_applied=lambda label: (self.stdout.write(f"applied {label}"), self.stdout.flush()),
            on_retry=lambda message: (self.stderr.write(message), self.stderr.flush()),
        )
        if result.error:
            self.stderr.write(result.error)
            return FAILED
        if not result.applied:
            self.stdout.write(f"No pending {options['stage']}-deploy migrations.")
        return OK
