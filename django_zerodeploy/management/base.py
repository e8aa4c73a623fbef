"""What every django-zerodeploy command shares: exit codes in ``--help``, ZERODEPLOY validated
first, and a user mistake or refusal reported as one message with its exit code, never a
traceback."""

from __future__ import annotations

import sys
import textwrap
from argparse import RawDescriptionHelpFormatter
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ..checks import require_valid_settings
from ..exit_codes import EPILOG, USAGE, CommandFailure


class ZeroDeployCommand(BaseCommand):
    epilog: str = EPILOG
    # Django's own checks exit 1 and would stop a command that must refuse (or replace) a broken
    # live release cleanly: only ZERODEPLOY itself is validated here (exit 2).
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        # one-paragraph epilogs are wrapped; laid-out ones (with newlines) are kept as written
        epilog = self.epilog
        parser.epilog = epilog if "\n" in epilog else textwrap.fill(epilog, 79)
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            require_valid_settings()
            code = self.run(options)
        except CommandFailure as exc:
            code = self.fail(exc.message, exc.exit_code, options)
        except OSError as exc:
            # the environment, not a bug: an unwritable RUNTIME_DIR, a full disk
            code = self.fail(_os_error_message(exc), USAGE, options)
        self.stdout.flush()
        if code:
            sys.exit(code)

    def run(self, options: dict[str, Any]) -> int:
        """Do the work; return the exit code."""
        raise NotImplementedError

    def fail(self, message: str, exit_code: int, options: dict[str, Any]) -> int:
        """Report a CommandFailure; returns the exit code."""
        self.stderr.write(message)
        return exit_code


def _os_error_message(exc: OSError) -> str:
    """``path: reason`` (e.g. "/run/x/deploy.lock: Permission denied"), as the shell says it."""
    if exc.filename is not None and exc.strerror:
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        return f"{where}: {exc.strerror}"
    return exc.strerror or str(exc)
