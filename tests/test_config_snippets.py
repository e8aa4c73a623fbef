"""``manage.py deploy --print-config KIND``: every snippet, printed from a real project, passes
its own tool's validator (systemd-analyze verify, nginx -t, haproxy -c, visudo -c, Gunicorn's
--check-config and a real Gunicorn started with it). Each validator is also shown a broken
copy, so a validator that accepts anything would fail the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .support import apt
from .support.gunicorn import free_port

pytestmark = pytest.mark.integration


def printed(site, kind: str) -> str:
    result = site.manage("deploy", "--print-config", kind, check=False)
    assert result.returncode == 0, result.stderr
    assert "@" not in result.stdout.replace("@/", "")  # no placeholder left unfilled
    return result.stdout


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), capture_output=True, text=True, cwd=cwd, timeout=120, check=False
    )


def test_systemd_units_verify(site, tmp_path: Path) -> None:
    analyze = apt.ensure("systemd-analyze", "systemd")
    service, sock = printed(site, "systemd"), printed(site, "socket")
    assert f"WorkingDirectory={site.server.resolve()}" in service
    assert f"ExecStart={sys.prefix}/bin/gunicorn -c {site.server.resolve()}/gunicorn.conf.py" in (
        service
    )
    for line in ("Type=notify", "NotifyAccess=all", "KillMode=mixed", "RuntimeDirectory=gunicorn"):
        assert line in service.splitlines()
    assert "ListenStream=/run/gunicorn.sock" in sock

    def verify(service_text: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "gunicorn.service").write_text(service_text)
        (tmp_path / "gunicorn.socket").write_text(sock)
        return run(
            analyze,
            "verify",
            "--man=no",
            str(tmp_path / "gunicorn.socket"),
            str(tmp_path / "gunicorn.service"),
        )

    good = verify(service)
    # verify exits 0 on lines it ignores: its output must be empty too
    assert good.returncode == 0 and not good.stdout.strip() and not good.stderr.strip(), good
    broken = verify(service.replace("Type=notify", "Type=notifyy"))
    assert "notifyy" in broken.stderr


def test_gunicorn_conf_loads_the_hooks(site, gunicorn_factory) -> None:
    conf = printed(site, "gunicorn")
    assert "from django_zerodeploy.gunicorn_conf import *" in conf
    assert 'wsgi_app = "exampleproject.wsgi:application"' in conf
    (site.server / "gunicorn.conf.py").write_text(conf)
    check = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c", "gunicorn.conf.py"],
        cwd=site.server,
        env=site.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    # a real Gunicorn with it (bind and pidfile overridden to stay inside the test's folders):
    # its workers report through the hooks
    gunicorn_factory()
    found = json.loads(site.manage("deploy", "--check", "--json", check=False).stdout)
    hook = next(f for f in found["findings"] if f["name"] == "Gunicorn hook")
    assert hook["ok"], hook


def test_nginx_snippet(site, tmp_path: Path) -> None:
    nginx = apt.ensure("nginx", "nginx")
    snippet = printed(site, "nginx")
    assert "server unix:/run/gunicorn.sock fail_timeout=0;" in snippet
    assert "location = /healthz/ {" in snippet
    assert f"alias {site.static_root}/;" in snippet
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        "pid nginx.pid;\nerror_log logs/error.log;\nevents {}\nhttp {\n    include site.conf;\n}\n"
    )

    def test(text: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "site.conf").write_text(text)
        return run(nginx, "-t", "-p", f"{tmp_path}/", "-c", "nginx.conf", "-e", "logs/error.log")

    good = test(snippet)
    assert good.returncode == 0, good.stderr
    assert test(snippet.replace("fail_timeout=0;", "fail_timeout=0")).returncode != 0


def test_haproxy_backend(site, tmp_path: Path) -> None:
    haproxy = apt.ensure("haproxy", "haproxy")
    backend = printed(site, "haproxy")
    assert "option httpchk GET /healthz/" in backend
    assert "http-check send hdr Host " in backend
    frame = (
        "global\n    log stdout local0\n"
        "defaults\n    mode http\n    timeout connect 5s\n    timeout client 30s\n"
        "    timeout server 30s\n"
        f"frontend web\n    bind 127.0.0.1:{free_port()}\n    default_backend gunicorn\n"
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(frame + backend)
    good = run(haproxy, "-c", "-f", str(config))
    assert good.returncode == 0, good.stdout + good.stderr
    config.write_text(frame + backend.replace("http-check send hdr", "http-check send hder"))
    assert run(haproxy, "-c", "-f", str(config)).returncode != 0


def test_sudoers_line(site, tmp_path: Path) -> None:
    visudo = apt.ensure("visudo", "sudo")
    text = printed(site, "sudoers")
    rule = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(rule) == 1 and rule[0].endswith(" reload gunicorn.service"), rule
    assert "NOPASSWD: /" in rule[0]  # a full path: sudo matches commands by path
    path = tmp_path / "gunicorn"
    path.write_text(text)
    path.chmod(0o440)
    good = run(visudo, "-cf", str(path))
    assert good.returncode == 0, good.stdout + good.stderr
    path.write_text(text.replace("NOPASSWD:", "NOPASSWD"))
    assert run(visudo, "-cf", str(path)).returncode != 0


def test_unknown_kind_is_a_usage_error(site) -> None:
    result = site.manage("deploy", "--print-config", "apache", check=False)
    assert result.returncode == 2
    assert "invalid choice: 'apache'" in result.stderr
    assert "Traceback" not in result.stderr
