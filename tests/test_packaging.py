"""The built distribution is complete: ``python -m build`` makes an sdist and a wheel holding
every file of the package (migrations, templates, static files), and the wheel alone, installed
into a fresh virtual environment, runs the example project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "django_zerodeploy"
_IGNORE = shutil.ignore_patterns("db.sqlite3", "staticfiles", "__pycache__", "*.pyc")


def sh(
    *args: str | os.PathLike[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess[str]:
    """Run a command for the test; a failure shows its whole output."""
    result = subprocess.run(
        [os.fspath(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def package_files() -> set[str]:
    """Every file of the package in the checkout, as wheel paths."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in PACKAGE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """sdist and wheel built with ``python -m build`` (the wheel is built from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    sh(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT, cwd=ROOT)
    return out


def the_wheel(dist: Path) -> Path:
    wheels = list(dist.glob("django_zerodeploy-*-py3-none-any.whl"))
    assert len(wheels) == 1, list(dist.iterdir())
    return wheels[0]


def test_wheel_holds_every_package_file(dist):
    with zipfile.ZipFile(the_wheel(dist)) as wheel:
        names = set(wheel.namelist())
    missing = package_files() - names
    assert not missing, f"files left out of the wheel: {sorted(missing)}"
    assert "django_zerodeploy/migrations/0001_initial.py" in names
    assert "django_zerodeploy/apps.py" in names
    # nothing but the package and its metadata
    assert {n.split("/", 1)[0] for n in names} == {
        "django_zerodeploy",
        the_wheel(dist).name.split("-py3")[0] + ".dist-info",
    }
    for kind in ("templates", "static"):
        shipped = {p for p in package_files() if p.startswith(f"django_zerodeploy/{kind}/")}
        assert shipped <= names, kind


def test_wheel_metadata_has_only_the_runtime_dependencies(dist):
    with zipfile.ZipFile(the_wheel(dist)) as wheel:
        meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(wheel.read(meta_name).decode())
    assert meta["Name"] == "django-zerodeploy"
    assert meta["Requires-Python"] == ">=3.11"
    runtime = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    assert sorted(r.split(">")[0].split("=")[0].strip().lower() for r in runtime) == [
        "django",
        "django-q2",
        "psutil",
    ]
    assert "django>=4.2" in [r.lower() for r in runtime]


def test_sdist_contains_the_package_and_readme(dist):
    import tarfile

    sdists = list(dist.glob("django_zerodeploy-*.tar.gz"))
    assert len(sdists) == 1
    with tarfile.open(sdists[0]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"README.md", "pyproject.toml"} <= names
    assert package_files() <= names


def test_wheel_installs_into_a_fresh_venv_and_runs_the_example_project(dist, tmp_path):
    venv = tmp_path / "venv"
    sh(sys.executable, "-m", "venv", venv)
    python = venv / "bin" / "python"
    sh(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", the_wheel(dist))

    project = tmp_path / "example_project"
    shutil.copytree(ROOT / "example_project", project, ignore=_IGNORE)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
        and not key.startswith("ZERODEPLOY_")
    }
    env.update(
        EXAMPLE_DB_PATH=str(tmp_path / "db.sqlite3"),
        EXAMPLE_STATIC_ROOT=str(tmp_path / "static"),
        ZERODEPLOY_RUNTIME_DIR=str(tmp_path / "run"),
    )

    where = sh(
        python,
        "-c",
        "import django_zerodeploy; print(django_zerodeploy.__file__)",
        cwd=tmp_path,
        env=env,
    )
    installed = Path(where.stdout.strip())
    assert venv in installed.parents, f"imported from {installed}, not from the fresh venv"

    check = sh(python, "manage.py", "check", cwd=project, env=env)
    assert "System check identified no issues" in check.stdout

    # the migrations and static files shipped in the wheel work, not just exist
    sh(python, "manage.py", "migrate", "--noinput", cwd=project, env=env)
    shown = sh(python, "manage.py", "showmigrations", "django_zerodeploy", cwd=project, env=env)
    assert "[X] 0001_initial" in shown.stdout
    sh(python, "manage.py", "collectstatic", "--noinput", cwd=project, env=env)
    static_prefix = "django_zerodeploy/static/"
    for rel in package_files():
        if rel.startswith(static_prefix):
            assert (tmp_path / "static" / rel.removeprefix(static_prefix)).is_file(), rel
