"""A VPS-shaped site: the setup most Django-on-a-VPS guides end with, built for real.

- two real users made with ``useradd`` (removed with ``userdel`` at teardown): ``zd-web-*``, as
  whom Gunicorn runs (``User=www-data`` in a unit), and ``zd-deploy-*``, who owns the checkout
  and runs ``manage.py deploy``; the deployer is in the web user's group;
- the checkout at ``<tmp>/var/www/myproject`` (a clone of a bare origin) with ``venv/`` inside,
  made with Debian's ``/usr/bin/python3 -m venv`` (the test interpreter lives under /root, which
  the two users cannot read) and filled from ``requirements.txt`` by real pip;
- the database in ``<tmp>/var/lib/myproject``, the runtime directory ``<tmp>/run/myproject``
  (group-shared, mode 2770, as ``deploy --print-config``/the guide set it up), Gunicorn on the
  Unix socket ``<tmp>/run/gunicorn.sock``;
- a real ``sudo`` (installed with apt when missing; the tests run as root) and sudoers drop-ins
  in /etc/sudoers.d, each checked with ``visudo -cf`` and removed at teardown.

Processes run as those users through ``setpriv`` (it execs: the pid we start is Gunicorn's master
itself, in its own process group, stopped by pid). systemd is not PID 1 here, so Gunicorn is
started directly, as its unit's ExecStart would.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .gunicorn import Gunicorn
from .site import EXAMPLE, REPO_ROOT, Site, git

SYSTEM_PYTHON = "/usr/bin/python3"
SUDOERS_D = Path("/etc/sudoers.d")


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a fixture command; a failure raises with its output."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise RuntimeError(f"{argv} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def ensure_sudo() -> None:
    """Debian's sudo (and visudo), installed with apt when missing (the tests run as root)."""
    if shutil.which("sudo") and shutil.which("visudo"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(
        ["apt-get", "install", "-y", "-q", "sudo"], env=env, capture_output=True
    ).returncode:
        run(["apt-get", "update", "-q"], env=env)
        run(["apt-get", "install", "-y", "-q", "sudo"], env=env)


@dataclass
class Users:
    web: str
    deploy: str

    @property
    def group(self) -> str:
        return self.web  # useradd made the web user's own group

    def uid(self, name: str) -> int:
        return pwd.getpwnam(name).pw_uid


def make_users() -> Users:
    suffix = secrets.token_hex(3)
    users = Users(web=f"zd-web-{suffix}", deploy=f"zd-deploy-{suffix}")
    run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "-s",
            "/usr/sbin/nologin",
            users.web,
        ]
    )
    run(
        [
            "useradd",
            "--user-group",
            "--no-create-home",
            "-G",
            users.web,
            "-s",
            "/bin/sh",
            users.deploy,
        ]
    )
    return users


def remove_users(users: Users) -> None:
    for name in (users.deploy, users.web):
        subprocess.run(["userdel", name], capture_output=True, check=False)
        subprocess.run(["groupdel", name], capture_output=True, check=False)


class Sudoers:
    """Drop-ins in /etc/sudoers.d written by a test, validated, removed at teardown."""

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def allow(self, line: str) -> Path:
        path = SUDOERS_D / f"zd-test-{secrets.token_hex(4)}"
        tmp = path.with_name(path.name + ".new")  # sudo ignores names with a dot
        tmp.write_text(line.rstrip("\n") + "\n")
        tmp.chmod(0o440)
        run(["visudo", "-cf", str(tmp)])
        tmp.rename(path)
        self.paths.append(path)
        return path

    def remove_all(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)
        self.paths.clear()


def build_wheel(dest: Path) -> Path:
    """The django-zerodeploy wheel of this checkout (the package is not on PyPI)."""
    dest.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dest),
            str(REPO_ROOT),
        ]
    )
    (wheel,) = dest.glob("django_zerodeploy-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert "django_zerodeploy/gunicorn/privilege.py" in archive.namelist()
    return wheel


@dataclass
class Vps(Site):
    """The Site API (commit_release, server_head, ...) on a VPS-shaped layout."""

    users: Users | None = None
    home: Path = field(default_factory=Path)
    sock: Path = field(default_factory=Path)
    wheel: Path = field(default_factory=Path)

    @property
    def venv(self) -> Path:
        return self.server / "venv"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment both users run with (a unit's Environment= and the deployer's
        profile): PATH with the venv first, the database and static root."""
        env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "LANG", "LC_"))}
        env.update(
            PATH=f"{self.venv}/bin:/usr/local/bin:/usr/bin:/bin",
            HOME=str(self.home),
            DJANGO_SETTINGS_MODULE="exampleproject.settings",
            EXAMPLE_DB_PATH=str(self.db_path),
            EXAMPLE_STATIC_ROOT=str(self.static_root),
            ZERODEPLOY_RUNTIME_DIR=str(self.runtime),  # the example's cache folder lives there
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def as_user(self, name: str) -> list[str]:
        return ["setpriv", f"--reuid={name}", f"--regid={name}", "--init-groups", "--"]

    def deployer(
        self, *argv: str, timeout: float = 600, cwd: Path | None = None, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the deploying user in the checkout; never raises."""
        assert self.users
        return subprocess.run(
            [*self.as_user(self.users.deploy), *argv],
            cwd=cwd or self.server,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def manage(
        self, *args: str, check: bool = True, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """``venv/bin/python manage.py ...`` as the deploying user."""
        result = self.deployer(
            str(self.venv / "bin" / "python"), "manage.py", *args, timeout=timeout, **env
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
            )
        return result

    def server_git(self, *args: str) -> str:
        result = self.deployer("git", *args)
        if result.returncode:
            raise RuntimeError(f"git {args} failed: {result.stderr}")
        return result.stdout.strip()

    def server_head(self) -> str:
        return self.server_git("rev-parse", "HEAD")

    def server_branch(self) -> str:
        return self.server_git("symbolic-ref", "--short", "HEAD")

    def install_requirements(self) -> None:
        """``venv/bin/pip install -r requirements.txt`` as the deployer, real pip."""
        pip = [
            str(self.venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
        ]
        result = self.deployer(*pip, "-r", "requirements.txt")
        assert result.returncode == 0, result.stdout + result.stderr

    def gunicorn(self, *, hooked: bool = True, workers: int = 2) -> VpsGunicorn:
        return VpsGunicorn(self, hooked=hooked, workers=workers)


class VpsGunicorn(Gunicorn):
    """Gunicorn as its unit's ExecStart runs it: the venv's ``gunicorn`` script, as the web user,
    on the Unix socket, with or without the project's gunicorn.conf.py hooks."""

    def __init__(self, site: Vps, *, hooked: bool, workers: int) -> None:
        super().__init__(
            site, workers=workers, uds=True, config="gunicorn.conf.py" if hooked else None
        )
        self.uds = str(site.sock)
        self.log = site.root / "log" / "gunicorn.log"

    def argv(self) -> list[str]:
        site = self.site
        assert isinstance(site, Vps) and site.users
        args = super().argv()[3:]  # drop "python -m gunicorn": the venv's script runs it
        return [*site.as_user(site.users.web), str(site.venv / "bin" / "gunicorn"), *args]


# -- building it ---------------------------------------------------------------------------------
PRE_ZERODEPLOY = {  # the example project as it was before django-zerodeploy (the shell script era)
    "exampleproject/settings.py": [
        ('    "django_zerodeploy",\n', ""),
        ('    "django_zerodeploy.middleware.HealthCheckMiddleware",\n', ""),
    ],
    "exampleproject/urls.py": [('    path("", include("django_zerodeploy.urls")),\n', "")],
    "gunicorn.conf.py": [
        ("from django_zerodeploy.gunicorn_conf import *  # noqa: F401,F403\n", "")
    ],
}


def _chown(path: Path, user: str, group: str, mode: int) -> None:
    shutil.chown(path, user, group)
    path.chmod(mode)


def make_vps(root: Path, users: Users, wheel: Path) -> Vps:
    """The VPS before the migration: the project without django-zerodeploy, served by Gunicorn
    from ``venv/`` (not started here), checkout owned by the deployer."""
    root.mkdir(parents=True)
    root.chmod(0o755)
    seed = root / "seed"
    shutil.copytree(
        EXAMPLE,
        seed,
        ignore=shutil.ignore_patterns(
            "db.sqlite3", "staticfiles", "__pycache__", "*.pyc", "demo.py"
        ),
    )
    for rel, edits in PRE_ZERODEPLOY.items():
        text = (seed / rel).read_text()
        for old, new in edits:
            assert old in text, (rel, old)
            text = text.replace(old, new)
        (seed / rel).write_text(text)
    with (seed / ".gitignore").open("a") as handle:
        handle.write("venv/\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "add", "-A")
    git(seed, "-c", "user.email=dev@example.com", "-c", "user.name=Dev", "commit", "-q", "-m", "v1")
    origin, dev = root / "origin.git", root / "dev"
    git(root, "clone", "-q", "--bare", str(seed), str(origin))
    shutil.rmtree(seed)
    git(root, "clone", "-q", str(origin), str(dev))
    git(dev, "config", "user.email", "dev@example.com")
    git(dev, "config", "user.name", "Example Dev")

    home = root / "home" / users.deploy
    home.mkdir(parents=True)
    (home / ".gitconfig").write_text(f"[safe]\n\tdirectory = {origin}\n")  # origin is root's here
    _chown(home, users.deploy, users.deploy, 0o700)
    shutil.chown(home / ".gitconfig", users.deploy, users.deploy)
    www = root / "var" / "www"
    www.mkdir(parents=True)
    _chown(www, users.deploy, users.deploy, 0o755)
    lib = root / "var" / "lib" / "myproject"
    lib.mkdir(parents=True)
    _chown(lib, users.web, users.group, 0o2770)
    run_dir = root / "run"
    run_dir.mkdir()
    _chown(run_dir, users.web, users.group, 0o755)
    runtime = run_dir / "myproject"
    runtime.mkdir()
    _chown(runtime, users.web, users.group, 0o2770)
    log = root / "log"
    log.mkdir()
    _chown(log, users.web, users.group, 0o750)

    server = www / "myproject"
    vps = Vps(
        root=root,
        origin=origin,
        dev=dev,
        server=server,
        runtime=runtime,
        db_path=lib / "db.sqlite3",
        static_root=server / "staticfiles",
        users=users,
        home=home,
        sock=run_dir / "gunicorn.sock",
        wheel=wheel,
    )
    for argv in (
        ["git", "clone", "-q", str(origin), str(server)],
        [SYSTEM_PYTHON, "-m", "venv", str(server / "venv")],
    ):
        result = vps.deployer(*argv, cwd=www)
        assert result.returncode == 0, result.stderr
    for key, value in (("user.email", "deploy@example.com"), ("user.name", "Deployer")):
        vps.server_git("config", key, value)
    vps.install_requirements()
    vps.manage("migrate", "--noinput")
    vps.db_path.chmod(0o660)  # the web user writes it too (its group, through the setgid folder)
    vps.manage("collectstatic", "--noinput")
    return vps
