"""Debian packages a test needs (validators such as nginx, haproxy, visudo), installed with apt
when the test runs as root and they are missing, as on a fresh CI machine."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

_updated = False


def ensure(binary: str, package: str) -> str:
    """The path of ``binary``, installing ``package`` first when it is missing. Without root
    or apt the test fails under CI and skips elsewhere, saying what to install."""
    global _updated
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        message = f"{binary} is missing: apt-get install {package} (as root)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if not _updated:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        _updated = True
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
        timeout=900,
    )
    found = shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")
    assert found, f"{package} is installed but {binary} is not on PATH"
    return found
