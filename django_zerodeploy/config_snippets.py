"""``deploy --print-config KIND``: configuration snippets filled in from this project.

The paths (checkout, virtualenv, pidfile, socket), the WSGI module, the user and the health
path come from the running project, so the snippet works as printed: a Gunicorn service unit
and its socket unit, a gunicorn.conf.py that loads the readiness hooks, Nginx ``upstream`` and
``server`` blocks, an HAProxy ``backend`` that polls ``/healthz/``, and the sudoers line that
lets the deploy user reload the unit. Templates are plain strings with ``@NAME@`` placeholders
(Nginx and systemd use ``$`` and braces themselves).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .conf import app_settings
from .exit_codes import USAGE, CommandFailure
from .healthz_url import healthz_path
from .runtime import suggested_runtime_dir

CONFIG_KINDS = ("systemd", "socket", "gunicorn", "nginx", "haproxy", "sudoers")


@dataclass
class ProjectFacts:
    """What the snippets are filled in with."""

    repo_dir: str
    venv: str
    wsgi_app: str
    user: str
    group: str
    deploy_user: str
    unit: str  # e.g. gunicorn.service
    name: str  # the unit's stem: socket, runtime directory and upstream are named after it
    socket_path: str
    pidfile: str
    runtime_dir: str
    healthz_path: str
    server_name: str
    static_url: str
    static_root: str
    systemctl: str
    hostname: str


def wsgi_app_spec() -> str:
    from django.conf import settings

    dotted = getattr(settings, "WSGI_APPLICATION", None) or "project.wsgi.application"
    module, _, attr = dotted.rpartition(".")
    return f"{module}:{attr}"


def _server_name() -> str:
    from django.conf import settings

    hosts = [h.lstrip(".") for h in getattr(settings, "ALLOWED_HOSTS", []) if h not in ("*", "")]
    return hosts[0] if hosts else "example.com"


def _owner(path: Path) -> tuple[str, str]:
    """User and group owning the checkout: who Gunicorn and the deploy should run as."""
    try:
        st = path.stat()
        return pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    except (OSError, KeyError):
        return "www-data", "www-data"


def project_facts() -> ProjectFacts:
    from django.conf import settings

    from .osutil import os_user

    repo = app_settings.repo_dir
    unit = app_settings.GUNICORN_SYSTEMD_UNIT or "gunicorn.service"
    name = unit.removesuffix(".service")
    user, group = _owner(repo)
    pidfile = app_settings.GUNICORN_PIDFILE or f"/run/{name}/gunicorn.pid"
    static_root = getattr(settings, "STATIC_ROOT", None)
    return ProjectFacts(
        repo_dir=str(repo),
        venv=sys.prefix,
        wsgi_app=wsgi_app_spec(),
        user=user,
        group=group,
        # who runs `manage.py deploy`: the checkout's owner when this prints as root
        deploy_user=user if os.getuid() == 0 else os_user(),
        unit=unit,
        name=name,
        socket_path=f"/run/{name}.sock",
        pidfile=str(pidfile),
        runtime_dir=str(app_settings.RUNTIME_DIR or suggested_runtime_dir(name)),
        healthz_path=healthz_path() or "/healthz/",
        server_name=_server_name(),
        static_url="/" + (getattr(settings, "STATIC_URL", None) or "static/").strip("/") + "/",
        static_root=str(static_root or repo / "staticfiles"),
        systemctl=shutil.which("systemctl") or "/usr/bin/systemctl",
        hostname=socket.gethostname().split(".")[0] or "web1",
    )


def render(kind: str, facts: ProjectFacts | None = None) -> str:
    if kind not in TEMPLATES:
        raise CommandFailure(
            f"Unknown configuration {kind!r}: use one of {', '.join(CONFIG_KINDS)}.", USAGE
        )
    text = TEMPLATES[kind]
    for key, value in asdict(facts or project_facts()).items():
        text = text.replace(f"@{key.upper()}@", value)
    return text


SYSTEMD = """\
# /etc/systemd/system/@UNIT@
# Gunicorn for @REPO_DIR@, reloaded by `manage.py deploy` (USR2 with a readiness gate).
[Unit]
Description=Gunicorn for @REPO_DIR@
Requires=@NAME@.socket
After=network.target

[Service]
# notify + NotifyAccess=all: after a USR2 the new master's workers tell systemd its pid
Type=notify
NotifyAccess=all
User=@USER@
Group=@GROUP@
# /run/@NAME@ holds the pidfile and django-zerodeploy's RUNTIME_DIR; kept across restarts
RuntimeDirectory=@NAME@
RuntimeDirectoryPreserve=yes
WorkingDirectory=@REPO_DIR@
ExecStart=@VENV@/bin/gunicorn -c @REPO_DIR@/gunicorn.conf.py
# a bare HUP: `manage.py deploy` and `manage.py reload_gunicorn` reload with a gate instead
ExecReload=/bin/kill -s HUP $MAINPID
KillMode=mixed
TimeoutStopSec=40
PrivateTmp=false

[Install]
WantedBy=multi-user.target
"""

SOCKET = """\
# /etc/systemd/system/@NAME@.socket
[Unit]
Description=Gunicorn socket for @REPO_DIR@

[Socket]
ListenStream=@SOCKET_PATH@
# the web server's user connects to it
SocketUser=www-data
SocketMode=0600

[Install]
WantedBy=sockets.target
"""

# The line that installs the hooks; setup_check looks for it in gunicorn.conf.py.
HOOK_LINE = "from django_zerodeploy.gunicorn_conf import *  # noqa: F401,F403"
GUNICORN = f"""\
# @REPO_DIR@/gunicorn.conf.py
# The hooks: a worker takes requests only once Django, the URLconf and SMOKE_URLS answered.
{HOOK_LINE}

wsgi_app = "@WSGI_APP@"
bind = "unix:@SOCKET_PATH@"
pidfile = "@PIDFILE@"
workers = 3
timeout = 60
graceful_timeout = 30
"""

NGINX = """\
# /etc/nginx/sites-available/@NAME@ (link it into sites-enabled)
upstream @NAME@ {
    server unix:@SOCKET_PATH@ fail_timeout=0;
}

server {
    listen 80;
    server_name @SERVER_NAME@;

    location @STATIC_URL@ {
        alias @STATIC_ROOT@/;
    }

    # the health endpoint, for a load balancer in front of this host
    location = @HEALTHZ_PATH@ {
        proxy_set_header Host $host;
        proxy_pass http://@NAME@;
    }

    location / {
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_redirect off;
        proxy_pass http://@NAME@;
    }
}
"""

HAPROXY = """\
# /etc/haproxy/haproxy.cfg: one `server` line per host (this one is @HOSTNAME@)
backend @NAME@
    mode http
    # Without a Host header Django's ALLOWED_HOSTS would answer 400
    option httpchk GET @HEALTHZ_PATH@
    http-check send hdr Host @SERVER_NAME@
    http-check expect status 200
    # out after 2 failed checks (~4 s), back after 2 good ones
    default-server inter 2s fall 2 rise 2
    server @HOSTNAME@ 127.0.0.1:80 check
"""

SUDOERS = """\
# /etc/sudoers.d/@NAME@ (edit with: visudo -f /etc/sudoers.d/@NAME@)
# lets @DEPLOY_USER@ reload exactly this unit, nothing else
@DEPLOY_USER@ ALL=(root) NOPASSWD: @SYSTEMCTL@ reload @UNIT@
"""

TEMPLATES = {
    "systemd": SYSTEMD,
    "socket": SOCKET,
    "gunicorn": GUNICORN,
    "nginx": NGINX,
    "haproxy": HAPROXY,
    "sudoers": SUDOERS,
}

__all__ = ["CONFIG_KINDS", "ProjectFacts", "project_facts", "render"]
