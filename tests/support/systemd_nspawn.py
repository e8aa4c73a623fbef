"""A real systemd, booted as PID 1 of a ``systemd-nspawn`` container on this machine.

The root filesystem (Debian bookworm, minbase plus systemd and the libraries the host's Python
links against) is built once with ``debootstrap`` and cached outside the repository
(``ZERODEPLOY_NSPAWN_ROOTFS``, default ``/var/cache/django-zerodeploy-tests/rootfs-bookworm``);
the host's interpreter, the virtualenv, the repository and the test's folder are bind-mounted at
their own paths, so nothing is installed inside. ``--volatile=overlay`` keeps the cached tree
unchanged: everything the container writes (units in ``/run/systemd/system``) vanishes with it.
The container shares the host's network, so the host's load generator reaches Gunicorn on
loopback. There is no machined on the host: commands run inside with ``nsenter`` into the
container's systemd. The container is stopped with ``systemctl poweroff`` and its nspawn pid
waited for; nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOTFS = Path(
    os.environ.get("ZERODEPLOY_NSPAWN_ROOTFS", "/var/cache/django-zerodeploy-tests/rootfs-bookworm")
)
PACKAGES = (
    "systemd,systemd-sysv,dbus,procps,ca-certificates,git,"
    # what a Python built on the host (pyenv, /usr/local) links against
    "libsqlite3-0,libssl3,libffi8,libbz2-1.0,liblzma5,libreadline8,libncursesw6,libexpat1,"
    "libtirpc3,libuuid1,libgdbm6,zlib1g"
)
BOOT_TIMEOUT = 180.0


def _apt_mirror() -> str:
    """The Debian mirror apt already uses on this machine."""
    for path in sorted(Path("/etc/apt").glob("sources.list.d/*.sources")) + [
        Path("/etc/apt/sources.list")
    ]:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = line.split()
                if line.startswith("URIs:") and "debian" in line and "security" not in line:
                    return words[1]
                if words[:1] == ["deb"] and "debian" in line and "security" not in line:
                    return next(w for w in words[1:] if w.startswith("http"))
    return "http://deb.debian.org/debian"


def missing_requirement() -> str:
    """Why a real systemd cannot boot here ('' when it can): root, Linux, systemd-nspawn."""
    if sys.platform != "linux":
        return "systemd-nspawn needs Linux"
    if os.geteuid() != 0:
        return "systemd-nspawn needs root"
    return ""


def ensure_tools() -> None:
    """apt-get install systemd-container and debootstrap when they are missing (as root)."""
    if shutil.which("systemd-nspawn") and shutil.which("debootstrap"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-q", "systemd-container", "debootstrap"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(install, env=env, capture_output=True, check=True)


def ensure_rootfs(rootfs: Path = ROOTFS) -> Path:
    """Build the cached root filesystem once (about 2 minutes); later calls return at once.
    Built into a sibling folder and renamed, under a lock, so a half-built tree is never used."""
    if (rootfs / "usr/lib/systemd/systemd").exists():
        return rootfs
    ensure_tools()
    rootfs.parent.mkdir(parents=True, exist_ok=True)
    with open(rootfs.parent / f".{rootfs.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (rootfs / "usr/lib/systemd/systemd").exists():
            return rootfs
        partial = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        argv = ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm"]
        ran = subprocess.run(
            [*argv, str(partial), _apt_mirror()],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if ran.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{ran.stdout[-3000:]}\n{ran.stderr[-3000:]}")
        # a login prompt on the console is not wanted, nor units that wait for the network
        for unit in ("console-getty.service", "systemd-networkd-wait-online.service"):
            link = partial / "etc/systemd/system" / unit
            with contextlib.suppress(FileExistsError):
                link.symlink_to("/dev/null")
        partial.rename(rootfs)
    return rootfs


class Container:
    """One booted container; ``run()`` executes a command inside it, as root."""

    def __init__(self, name: str, binds: list[Path], ro_binds: list[Path], log: Path) -> None:
        self.name = name
        self.binds = binds
        self.ro_binds = ro_binds
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0  # the host pid of the container's systemd

    def boot(self, rootfs: Path = ROOTFS) -> Container:
        argv = [
            "systemd-nspawn",
            "-D",
            str(rootfs),
            "-b",
            "-M",
            self.name,
            "--register=no",
            "--keep-unit",  # there is no host bus to register a scope on
            "--console=passive",
            "--volatile=overlay",
        ]
        argv += [f"--bind={p}" for p in self.binds]
        argv += [f"--bind-ro={p}" for p in self.ro_binds]
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=open(self.log, "ab"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.tail()}")
            if not self.leader:
                self.leader = self._find_leader()
            if self.leader:
                state = self.run(
                    "systemctl", "is-system-running", "--wait", timeout=60, check=False
                )
                if state.stdout.strip() in ("running", "degraded"):
                    return self
            time.sleep(0.5)
        self.poweroff()
        raise RuntimeError(f"the container did not boot within {BOOT_TIMEOUT:g} s:\n{self.tail()}")

    def _find_leader(self) -> int:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children():  # type: ignore[union-attr]
                if child.name() == "systemd":
                    return child.pid
        return 0

    def run(
        self,
        *argv: str,
        timeout: float = 300,
        check: bool = True,
        env: dict[str, str] | None = None,
        cwd: Path | str = "/",
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (all its namespaces) in ``cwd`` with exactly
        ``env``, and wait for it."""
        variables = [f"{k}={v}" for k, v in (env or {"PATH": _PATH}).items()]
        inner = ["env", "-i", "-C", str(cwd), *variables, *argv]
        ran = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *inner],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and ran.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} exited {ran.returncode} in the container:\n{ran.stdout}\n{ran.stderr}"
            )
        return ran

    def write(self, path: str, text: str) -> None:
        """Write a file inside the container (through its root as the host sees it)."""
        target = Path(f"/proc/{self.leader}/root") / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def systemctl(self, *args: str, check: bool = True) -> str:
        return self.run("systemctl", *args, check=check).stdout.strip()

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit)

    def host_pid(self, pid: int) -> int | None:
        """The host's pid of a process known inside the container by ``pid``."""
        for proc in psutil.Process(self.leader).children(recursive=True):
            with contextlib.suppress(OSError, psutil.Error):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                line = next(ln for ln in status.splitlines() if ln.startswith("NSpid:"))
                if int(line.split()[-1]) == pid:
                    return proc.pid
        return None

    def tail(self, chars: int = 4000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-chars:]
        return ""

    def poweroff(self, timeout: float = 90) -> None:
        """``systemctl poweroff`` inside, then wait for the nspawn process; TERM that pid (nspawn
        then shuts the container down) and KILL it only if it will not go."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.leader:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.run("systemctl", "poweroff", "--no-block", timeout=30, check=False)
        for sig in (None, signal.SIGTERM, signal.SIGKILL):
            if sig is not None and self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout if sig is None else 20)
                break
        with contextlib.suppress(OSError):
            shutil.rmtree(f"/run/systemd/nspawn/propagate/{self.name}")


_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
