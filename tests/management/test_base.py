"""The commands' base: an environment error is one message with exit 2, never a traceback."""

from __future__ import annotations

import errno
import io

import pytest
from django.core.management import call_command

from django_zerodeploy import exit_codes
from django_zerodeploy.management.base import ZeroDeployCommand


class _Unwritable(ZeroDeployCommand):
    def run(self, options):
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/run/deploy.lock")


def test_an_os_error_in_a_command_is_one_line_and_exit_2():
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command(_Unwritable(), stdout=io.StringIO(), stderr=err)
    assert exited.value.code == exit_codes.USAGE
    assert err.getvalue().strip() == "/srv/run/deploy.lock: Permission denied"
