"""Each point where a release can fail: the deploy exits non-zero, no request fails, the
previous release serves afterwards, HEAD and the branch are back, and the record says what
happened. Real pip, real migrations, a real Gunicorn under load."""

from __future__ import annotations

import pytest

from tests.deploy.test_deploy import (
    assert_clean_checkout,
    db_rows,
    history,
    original,
    show,
    step,
    step_outputs,
    under_load,
)
from tests.support.site import Site

pytestmark = pytest.mark.integration

SECRET = "s3cr3t-t0ken-4-pip"

CREATE_TAG = (
    "from django.db import migrations, models\n\n"
    "class Migration(migrations.Migration):\n"
    "    dependencies = [('notes', '0001_initial')]\n"
    "    operations = [migrations.CreateModel('Tag', [('id', models.BigAutoField(primary_key=True)),"
    " ('name', models.CharField(max_length=20, null=True))])]\n"
)
FAILING = (
    "from django.db import migrations\n\n"
    "def boom(apps, schema_editor):\n"
    "    raise RuntimeError('migration boom')\n\n"
    "class Migration(migrations.Migration):\n"
    "    dependencies = [('notes', '0002_tag')]\n"
    "    operations = [migrations.RunPython(boom, migrations.RunPython.noop)]\n"
)


def files_for(case: str, site: Site) -> tuple[dict[str, str], dict[str, str]]:
    """(files of the broken release, environment of the deploy) for each failure point."""
    if case == "bad_requirement":
        requirements = original(site, "requirements.txt") + "nonexistent-zerodeploy-demo-pkg==1.0\n"
        # credentials in an index URL must never reach the record; the index refuses at once
        env = {
            "PIP_INDEX_URL": f"https://deployer:{SECRET}@127.0.0.1:9/simple",
            "PIP_RETRIES": "0",
            "PIP_TIMEOUT": "5",
        }
        return {"requirements.txt": requirements}, env
    if case == "settings_import_error":
        return {
            "exampleproject/settings.py": original(site, "exampleproject/settings.py")
            + "\nimport nonexistent_settings_helper  # noqa\n"
        }, {}
    if case == "urlconf_import_error":
        return {
            "exampleproject/urls.py": original(site, "exampleproject/urls.py")
            + "\nfrom notes.views import view_that_does_not_exist  # noqa\n"
        }, {}
    if case == "check_error":
        models = original(site, "notes/models.py") + (
            "\n\nclass Label(models.Model):\n    price = models.DecimalField()  # fields.E130: no decimal_places\n"
        )
        return {"notes/models.py": models}, {}
    if case == "failing_migration":
        return {
            "notes/migrations/0002_tag.py": CREATE_TAG,
            "notes/migrations/0003_boom.py": FAILING,
        }, {}
    if case == "smoke_5xx":
        views = original(site, "notes/views.py").replace(
            "def home(request):\n", "def home(request):\n    raise ValueError('home is broken')\n"
        )
        return {"notes/views.py": views}, {}
    if case == "verify_mismatch":
        # the new workers report a release id other than the commit: verify must catch it
        return {"REVISION": "0" * 40 + "\n"}, {}
    raise AssertionError(case)


# (case, failing step, final status, words the message must contain)
CASES = [
    ("bad_requirement", "install", "rolled_back", "pip install"),
    ("settings_import_error", "preflight", "failed", "nonexistent_settings_helper"),
    ("urlconf_import_error", "preflight", "failed", "view_that_does_not_exist"),
    ("check_error", "preflight", "failed", "fields.E130"),
    ("failing_migration", "migrate", "rolled_back", "notes.0002_tag"),
    ("smoke_5xx", "preflight", "failed", "500"),
    ("verify_mismatch", "verify", "rolled_back", "0000000000"),
]


# also run on the other Django versions (runtests.py MATRIX): refused before the live tree
# moves, and rolled back after a reload
ON_MATRIX = {"urlconf_import_error", "verify_mismatch"}


@pytest.mark.parametrize(
    ("case", "failing", "status", "words"),
    [pytest.param(*c, id=c[0], marks=[pytest.mark.matrix] * (c[0] in ON_MATRIX)) for c in CASES],
)
def test_broken_release_is_refused_or_rolled_back(
    site, gunicorn_factory, load_factory, case, failing, status, words
):
    server = gunicorn_factory(workers=2)
    v1 = site.server_head()
    files, env = files_for(case, site)
    bad = site.commit_release("v2", files)
    result, report = under_load(site, server, load_factory, **env)
    assert result.returncode == 1, show(result)
    assert report.failed == 0, report.summary()
    assert server.served_releases() == {"v1"}
    assert server.healthz()["releaseId"] == v1
    assert_clean_checkout(site, v1)

    record = history(site)[0]
    assert record["status"] == status, record
    assert (record["previous_sha"], record["target_sha"]) == (v1, bad)
    assert step(record, failing)["status"] == "failed", record["steps"]
    assert words in record["message"], record["message"]
    names = [s["name"] for s in record["steps"]]
    # steps after the failing one never ran (no pending rows are left behind)
    assert all(s["status"] != "pending" for s in record["steps"])
    if status == "rolled_back":
        assert "rollback:checkout" in names or case == "bad_requirement"
        assert "Rolled back" in record["message"]
    else:
        assert not [n for n in names if n.startswith("rollback:")]  # the live tree never moved
        assert "checkout" not in names or step(record, "checkout")["status"] != "ok"

    if case == "bad_requirement":
        outputs = step_outputs(site, record["id"])
        assert "nonexistent-zerodeploy-demo-pkg" in outputs
        assert SECRET not in outputs and SECRET not in result.stdout + result.stderr
        assert step(record, "rollback:install")["status"] == "ok"  # previous requirements again
    if case == "failing_migration":
        applied = db_rows(
            site, "SELECT name FROM django_migrations WHERE app = 'notes' ORDER BY name"
        )
        assert [r[0] for r in applied] == ["0001_initial", "0002_tag"]
        assert record["applied_migrations"] == ["notes.0002_tag"]
        assert "not reversed" in record["message"]
    if case == "verify_mismatch":
        assert step(record, "reload")["status"] == "rolled_back"
        assert step(record, "rollback:reload")["status"] == "ok"


def test_rolled_back_release_is_refused_until_forced_or_newer(site, gunicorn_factory, load_factory):
    server = gunicorn_factory(workers=2)
    v1 = site.server_head()
    files, _ = files_for("verify_mismatch", site)
    bad = site.commit_release("v2", files)
    first, report1 = under_load(site, server, load_factory)
    assert first.returncode == 1, show(first)
    master = server.master_pid()

    again, report2 = under_load(site, server, load_factory)
    assert again.returncode == 1, show(again)
    assert "was rolled back by deployment" in again.stdout
    assert server.master_pid() == master  # refused before anything happened: no reload
    refusal = history(site)[0]
    assert refusal["status"] == "failed" and step(refusal, "fetch")["status"] == "failed"
    assert_clean_checkout(site, v1)

    forced, report3 = under_load(site, server, load_factory, "--force")
    assert forced.returncode == 1, show(forced)  # --force deploys it, and verify refuses it again
    assert "was rolled back by deployment" not in forced.stdout
    assert history(site)[0]["target_sha"] == bad

    good = site.commit_release("v3", {"REVISION": None})  # a newer commit is not refused
    newer, report4 = under_load(site, server, load_factory)
    assert newer.returncode == 0, show(newer)
    assert server.served_releases() == {"v3"}
    assert_clean_checkout(site, good)
    for report in (report1, report2, report3, report4):
        assert report.failed == 0, report.summary()
