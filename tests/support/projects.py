"""Projects laid out as ``django-admin startproject`` makes them, as their owners run them.

Each is made by the real ``startproject`` (and ``startapp``) of the test venv's Django, then
given only what its tools' own docs add: our INSTALLED_APPS, MIDDLEWARE and URL lines and the
README's minimal ZERODEPLOY keys; a ``.env`` read by python-dotenv, django-environ or
python-decouple; whitenoise's ``CompressedManifestStaticFilesStorage``; a git-ignored
``local_settings.py`` imported at the end of the settings. SQLite (``BASE_DIR / "db.sqlite3"``),
``media/``, ``staticfiles/``, ``.env`` and the virtualenv live in the checkout, git-ignored.

The virtualenv (``venv/`` or ``.venv/``) is a real one made with ``python -m venv`` inside the
server checkout; to stay cheap it has no pip of its own and sees the test venv's packages
through a ``.pth`` file (what it installs itself shadows them, as in any virtualenv).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import sysconfig
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from django_zerodeploy.runtime import default_runtime_dir

from .gunicorn import Gunicorn, free_port
from .site import Site, git

LAYOUTS = ("dotenv", "environ", "decouple")

SETTINGS_FOR = {
    # python-dotenv's README
    "dotenv": (
        "import os\n\nfrom dotenv import load_dotenv\n\n",
        'load_dotenv(BASE_DIR / ".env")\n\n'
        'SECRET_KEY = os.environ.get("SECRET_KEY", "django-insecure-dev-only")\n'
        'DEBUG = os.environ.get("DEBUG", "True") == "True"\n'
        'ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h]\n'
        'BANNER = os.environ.get("BANNER", "development")\n',
    ),
    # django-environ's quick start
    "environ": (
        "import environ\n\n",
        "env = environ.Env(DEBUG=(bool, True))\n"
        'environ.Env.read_env(BASE_DIR / ".env")\n\n'
        'SECRET_KEY = env("SECRET_KEY", default="django-insecure-dev-only")\n'
        'DEBUG = env("DEBUG")\n'
        'ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])\n'
        'BANNER = env("BANNER", default="development")\n',
    ),
    # python-decouple's README (it finds the .env beside manage.py by itself)
    "decouple": (
        "from decouple import Csv, config\n\n",
        'SECRET_KEY = config("SECRET_KEY", default="django-insecure-dev-only")\n'
        'DEBUG = config("DEBUG", default=True, cast=bool)\n'
        'ALLOWED_HOSTS = config("ALLOWED_HOSTS", default="", cast=Csv())\n'
        'BANNER = config("BANNER", default="development")\n',
    ),
}
VENV_DIR = {"dotenv": "venv", "environ": ".venv", "decouple": "venv"}
ENV_FILE = (
    "DEBUG=False\nSECRET_KEY=prod-{layout}-7c1f0e2a9b\nALLOWED_HOSTS=127.0.0.1,localhost\n"
    "BANNER=production-{layout}\n"
)
GITIGNORE = (
    "__pycache__/\n*.py[cod]\ndb.sqlite3\ndb.sqlite3-journal\ndb.sqlite3-wal\ndb.sqlite3-shm\n"
    "media/\nstaticfiles/\n.env\nvenv/\n.venv/\nlocal_settings.py\n"
)
SETTINGS_TAIL = """
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

ZERODEPLOY = {
    "GUNICORN_PIDFILE": "{pidfile}",
    "HEALTHZ_URL": "http://127.0.0.1:{port}/healthz/",
    "SMOKE_URLS": ["/", "/digest/"],
}
Q_CLUSTER = {
    "name": "myproject",
    "orm": "default",
    "workers": 1,
    "max_attempts": 1,
    "ack_failures": True,
    "timeout": 1800,
    "retry": 1900,
    "catch_up": False,
    "ALT_CLUSTERS": {{}},
}

try:
    from .local_settings import *  # noqa: F403
except ImportError:
    pass
"""
LOCAL_SETTINGS = "SESSION_COOKIE_SECURE = True\nCSRF_COOKIE_SECURE = True\n"

VIEWS = '''import hashlib
import json
import os
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.http import HttpResponse
from django.shortcuts import render

from .release import RELEASE_NAME


def home(request):
    response = render(request, "pages/home.html", {"release": RELEASE_NAME})
    response["X-Example-Release"] = RELEASE_NAME
    return response


def _real(path):
    return os.path.realpath(path) if path else path


def effective_settings():
    """What decides how this process serves, with paths resolved (a link is its target)."""
    databases = {}
    for alias in connections:
        config = dict(connections[alias].settings_dict)
        if "sqlite" in config["ENGINE"]:
            config["NAME"] = _real(str(config["NAME"]))
        databases[alias] = {k: config[k] for k in sorted(config) if k != "TEST"}
    with connections["default"].cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        journal = cursor.fetchone()[0]
    return {
        "DEBUG": settings.DEBUG,
        "SECRET_KEY": hashlib.sha256(settings.SECRET_KEY.encode()).hexdigest(),
        "ALLOWED_HOSTS": list(settings.ALLOWED_HOSTS),
        "BANNER": settings.BANNER,
        "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
        "DATABASES": databases,
        "journal_mode": journal,
        "STATIC_ROOT": _real(str(settings.STATIC_ROOT)),
        "MEDIA_ROOT": _real(str(settings.MEDIA_ROOT)),
        "STORAGES": settings.STORAGES,
    }


def digest(request):
    """The settings digest; inside a preflight (DIGEST_DIR set) also written to a file."""
    found = effective_settings()
    text = json.dumps(found, sort_keys=True, default=str)
    body = json.dumps({"digest": hashlib.sha256(text.encode()).hexdigest(), "settings": found,
                       "base_dir": str(settings.BASE_DIR), "pid": os.getpid()}, default=str)
    where = os.environ.get("DIGEST_DIR")
    if where:
        (Path(where) / f"{os.getpid()}.json").write_text(body)
    return HttpResponse(body, content_type="application/json")
'''
URLS = """from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("digest/", views.digest, name="digest"),
]
"""
HOME = """{% load static %}<!doctype html>
<html><head><link rel="stylesheet" href="{% static 'pages/site.css' %}"></head>
<body><h1>{{ release }}</h1></body></html>
"""


def home_template(*css: str) -> str:
    """The home page, linking each of ``css`` (static paths) through ``{% static %}``."""
    links = "".join(f'<link rel="stylesheet" href="{{% static \'{c}\' %}}">' for c in css)
    return HOME.replace('<link rel="stylesheet" href="{% static \'pages/site.css\' %}">', links)


@dataclass
class ProjectSite(Site):
    """A startproject-shaped site: the server checkout holds its venv and its state."""

    layout: str = "dotenv"
    release_app = "pages"

    @property
    def venv(self) -> Path:
        return self.server / VENV_DIR[self.layout]

    @property
    def pidfile(self) -> Path:
        return self.root / "run" / "gunicorn.pid"

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def env(self, **extra: str) -> dict[str, str]:
        """An operator's shell after ``source venv/bin/activate``: no settings variables."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("DJANGO_", "ZERODEPLOY_", "PYTHON", "PIP_", "VIRTUAL_ENV"))
        }
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.venv),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def gunicorn(self, workers: int = 2, env: dict[str, str] | None = None) -> ProjectGunicorn:
        """``env``: variables only Gunicorn gets, as a systemd unit's ``Environment=`` lines."""
        return ProjectGunicorn(self, workers=workers, env=env)

    def pip(self, *args: str) -> str:
        """pip of the project's venv (the test venv's pip, installing into this venv)."""
        result = subprocess.run(
            [self.python, "-m", "pip", "--disable-pip-version-check", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def packages(self) -> list[str]:
        return sorted(self.pip("freeze", "--all").splitlines())


class ProjectGunicorn(Gunicorn):
    """``gunicorn myproject.wsgi -w 2 -b 127.0.0.1:PORT`` from the project's venv, in its
    checkout, without any config file: as its owner starts it. ``--pid`` is the pidfile the
    README's minimal ZERODEPLOY names."""

    def argv(self) -> list[str]:
        return [
            self.site.python,
            "-m",
            "gunicorn",
            "myproject.wsgi",
            "-w",
            str(self.workers),
            "-b",
            f"127.0.0.1:{self.port}",
            "--pid",
            str(self.site.pidfile),
            "--error-logfile",
            str(self.log),
        ]


def _venv(path: Path) -> None:
    """A real venv at ``path`` that also sees the test venv's packages (after its own)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    inner = subprocess.run(
        [
            str(path / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = sysconfig.get_paths()["purelib"]
    Path(inner, "zz-test-venv.pth").write_text(f"import site; site.addsitedir({outer!r})\n")


def _edit_settings(settings: str, layout: str, port: int, pidfile: Path) -> str:
    head, values = SETTINGS_FOR[layout]
    settings = settings.replace(
        "from pathlib import Path\n", "from pathlib import Path\n\n" + head, 1
    )
    settings = re.sub(r"^DEBUG = .*\n", "", settings, count=1, flags=re.M)
    settings = re.sub(r"^ALLOWED_HOSTS = .*\n", "", settings, count=1, flags=re.M)
    settings = re.sub(r"^SECRET_KEY = .*\n", values, settings, count=1, flags=re.M)
    settings = re.sub(
        r"(['\"]django\.contrib\.staticfiles['\"],\n)",
        r"\1    'django_q',\n    'django_zerodeploy',\n    'pages',\n",
        settings,
        count=1,
    )
    settings = settings.replace(
        "MIDDLEWARE = [\n",
        "MIDDLEWARE = [\n    'django_zerodeploy.middleware.HealthCheckMiddleware',\n",
        1,
    )
    settings = re.sub(
        r"(['\"]django\.middleware\.security\.SecurityMiddleware['\"],\n)",
        r"\1    'whitenoise.middleware.WhiteNoiseMiddleware',\n",
        settings,
        count=1,
    )
    if layout == "environ":
        settings = re.sub(
            r"DATABASES = \{\n.*?\n\}\n",
            "DATABASES = {\n    'default': env.db('DATABASE_URL', "
            "default=f\"sqlite:///{BASE_DIR / 'db.sqlite3'}\"),\n}\n",
            settings,
            count=1,
            flags=re.S,
        )
    tail = SETTINGS_TAIL.replace("{port}", str(port)).replace("{pidfile}", str(pidfile))
    return settings + tail.replace("{{}}", "{}")


def _seed(seed: Path, layout: str, port: int, pidfile: Path, requirements: str) -> None:
    seed.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "myproject", str(seed)], check=True
    )
    subprocess.run([sys.executable, "manage.py", "startapp", "pages"], cwd=seed, check=True)
    settings = seed / "myproject" / "settings.py"
    settings.write_text(_edit_settings(settings.read_text(), layout, port, pidfile))
    urls = seed / "myproject" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace("from django.urls import path", "from django.urls import include, path")
        .replace(
            "    path('admin/', admin.site.urls),\n",
            "    path('admin/', admin.site.urls),\n"
            "    path('', include('django_zerodeploy.urls')),\n"
            "    path('', include('pages.urls')),\n",
        )
    )
    pages = seed / "pages"
    (pages / "views.py").write_text(VIEWS)
    (pages / "urls.py").write_text(URLS)
    (pages / "release.py").write_text('RELEASE_NAME = "v1"\n')
    (pages / "templates" / "pages").mkdir(parents=True)
    (pages / "templates" / "pages" / "home.html").write_text(HOME)
    (pages / "static" / "pages").mkdir(parents=True)
    (pages / "static" / "pages" / "site.css").write_text("body { color: #222; }\n")
    (seed / "requirements.txt").write_text(requirements)
    (seed / ".gitignore").write_text(GITIGNORE)


def make_project(
    root: Path, layout: str, *, requirements: str = "", wal: bool | None = None
) -> ProjectSite:
    """origin, dev and server of a startproject-shaped site in ``layout``; the server has its
    venv, ``.env``, ``local_settings.py``, migrated SQLite database and collected static."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    dev, server = root / "dev", root / "server"
    # the default runtime directory (one per checkout; the test removes it at teardown), and
    # where Gunicorn writes its pidfile (the README's /run/mysite/gunicorn.pid)
    runtime = default_runtime_dir(server.resolve())
    (root / "run").mkdir(mode=0o700)
    base = "Django\ngunicorn\ndjango-q2\npsutil\nwhitenoise\n"
    tool = {"dotenv": "python-dotenv", "environ": "django-environ", "decouple": "python-decouple"}
    _seed(
        root / "seed",
        layout,
        port,
        root / "run" / "gunicorn.pid",
        base + tool[layout] + "\n" + requirements,
    )
    seed = root / "seed"
    git(seed, "init", "-q", "-b", "main")
    git(seed, "config", "user.email", "dev@example.com")
    git(seed, "config", "user.name", "Example Dev")
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", "Release v1")
    origin = root / "origin.git"
    git(root, "clone", "-q", "--bare", str(seed), str(origin))
    for clone in (dev, server):
        git(root, "clone", "-q", str(origin), str(clone))
        git(clone, "config", "user.email", "dev@example.com")
        git(clone, "config", "user.name", "Example Dev")
    site = ProjectSite(
        root=root,
        origin=origin,
        dev=dev,
        server=server,
        runtime=runtime,
        db_path=server / "db.sqlite3",
        static_root=server / "staticfiles",
        port=port,
        layout=layout,
    )
    _venv(site.venv)
    (server / ".env").write_text(ENV_FILE.format(layout=layout))
    (server / "myproject" / "local_settings.py").write_text(LOCAL_SETTINGS)
    site.manage("migrate", "--noinput")
    if wal if wal is not None else layout == "environ":
        with closing(sqlite3.connect(site.db_path)) as conn:  # persistent: the file says so
            conn.execute("PRAGMA journal_mode=WAL")
    site.manage("collectstatic", "--noinput")
    return site


def read_digest(body: bytes) -> dict:
    return json.loads(body)
