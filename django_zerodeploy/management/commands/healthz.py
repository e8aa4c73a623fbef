"""``manage.py healthz``: run the health checks in this process, or drain/resume this host."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from ... import health
from ...conf import app_settings
from ...exit_codes import FAILED, OK, USAGE, CommandFailure
from ...health.report import report_table
from ..base import ZeroDeployCommand

EPILOG = (
    "Exit codes: 0 every critical check passes (status pass or warn), or the drain flag was "
    "set/removed; 1 a critical check fails or this host is draining (what /healthz/ answers "
    "with 503); 2 bad usage or configuration (HEALTH_CHECKS, an unwritable runtime directory)."
)


class Command(ZeroDeployCommand):
    help = (
        "Run the /healthz/ checks in this process and print them (for cron and shells), or "
        "take this host out of the load balancer (--drain) and back (--resume). The drain flag "
        "is a file in this host's runtime directory: other hosts sharing the database keep "
        "serving."
    )
    epilog = EPILOG

    def add_arguments(self, parser: CommandParser) -> None:
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--drain",
            action="store_true",
            help="Make /healthz/ answer 503 on every instance of this host.",
        )
        mode.add_argument("--resume", action="store_true", help="Remove this host's drain flag.")
        parser.add_argument("--reason", default="", help="Why the host drains (kept in the flag).")
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the full health+json document instead of a table.",
        )

    def run(self, options: dict[str, Any]) -> int:
        if options["drain"] or options["resume"]:
            return self._drain(options["drain"], options["reason"])
        return self._check(options["json"])

    def _drain(self, draining: bool, reason: str) -> int:
        try:
            health.set_draining(draining, reason=reason)
        except OSError as exc:
            raise CommandFailure(
                f"Cannot change the drain flag in {app_settings.RUNTIME_DIR or 'the runtime directory'}: "
                f"{exc.strerror or exc}. Check ZERODEPLOY['RUNTIME_DIR'] and its permissions.",
                USAGE,
            ) from exc
        window = app_settings.HEALTHZ_CACHE_SECONDS
        if draining:
            self.stdout.write(
                f"Draining: /healthz/ answers 503 on this host within {window:g} s "
                f"(flag {health.drain.flag_path()}). Undo with: manage.py healthz --resume"
            )
            if not app_settings.RUNTIME_DIR:
                self.stdout.write(
                    "Note: ZERODEPLOY['RUNTIME_DIR'] is not set, so the flag is in a directory "
                    "named after this OS user and checkout; a Gunicorn running as another user "
                    "or from another checkout does not see it."
                )
        else:
            self.stdout.write(f"Resumed: /healthz/ reports the checks again within {window:g} s.")
        return OK

    def _check(self, as_json: bool) -> int:
        report = health.run_checks()
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(details=True), indent=2))
        else:
            self.stdout.write(report_table(report))
        if report.error:
            raise CommandFailure(report.error, USAGE)
        return FAILED if report.status == "fail" else OK
