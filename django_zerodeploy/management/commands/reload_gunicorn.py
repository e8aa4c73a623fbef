"""``manage.py reload_gunicorn``: load the checked-out code into Gunicorn without dropping a
request and without ever letting a broken release take one (see docs/reload.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from ...conf import RELOAD_STRATEGIES
from ...gunicorn import reload
from ..base import ZeroDeployCommand

EPILOG = (
    "Exit codes: 0 reloaded, the new release serves; 1 refused or aborted (preflight failed, "
    "the new generation did not get ready, another reload kept the lock, hup or systemd on preload_app): "
    "the old release still serves; 2 bad usage or configuration (unknown strategy, pidfile of "
    "another project, several masters, usr2 on a preload_app master that cannot re-exec), "
    "nothing was signalled; 3 the site is down or may be (Gunicorn not running, "
    "the master exited) and needs a person."
)


class Command(ZeroDeployCommand):
    help = (
        "Reload Gunicorn with the checked-out code: find and prove the master of this project, "
        "preflight the code in a fresh interpreter, then usr2 (default: a new master whose "
        "workers must all report ready before the old one is retired), hup or systemd "
        "(systemctl reload), and verify which release serves."
    )
    epilog = EPILOG

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--strategy",
            choices=RELOAD_STRATEGIES,
            help="usr2 (default: ZERODEPLOY['RELOAD_STRATEGY']), hup or systemd.",
        )
        parser.add_argument(
            "--pidfile",
            help="Gunicorn's pidfile (default: GUNICORN_PIDFILE, "
            "else the systemd unit's MainPID, else found with psutil).",
        )
        parser.add_argument("--unit", help="systemd unit (default: GUNICORN_SYSTEMD_UNIT).")
        parser.add_argument(
            "--timeout",
            type=float,
            help="Seconds the new generation has to get ready (default: RELOAD_TIMEOUT).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the result as JSON instead of one line per phase.",
        )

    def run(self, options: dict[str, Any]) -> int:
        as_json = options["json"]
        result = reload(
            strategy=options["strategy"],
            pidfile=options["pidfile"],
            unit=options["unit"],
            timeout=options["timeout"],
            echo=None if as_json else self.stdout.write,
        )
        return self._finish(result.exit_code, result.message, as_json, result)

    def fail(self, message: str, exit_code: int, options: dict[str, Any]) -> int:
        return self._finish(exit_code, message, options["json"], None)

    def _finish(self, code: int, message: str, as_json: bool, result: Any) -> int:
        if as_json:
            data = (
                result.as_dict()
                if result is not None
                else {"ok": False, "exit_code": code, "message": message}
            )
            self.stdout.write(json.dumps(data, indent=2))
        elif code == 0:
            self.stdout.write(self.style.SUCCESS(message))
        else:
            if result is not None and result.output:
                self.stderr.write(result.output)
            self.stderr.write(message)
        return code
