"""The admin's history and detail page name each deploy's release directory and venv key (the
releases layout), say when a deploy ran in place, and draw the releases pipeline's steps,
its switch back included, as bars on the timeline."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from django_zerodeploy.models import Deployment
from tests.support.admin import client_for, isolated, succeeded, timed_steps, url  # noqa: F401

pytestmark = pytest.mark.django_db

RELEASE = "20261203072800-bbbbbbbbbbbb"
KEY = "cpython-3.11.7-fedcba9876543210"
OTHER_KEY = "cpython-3.11.7-0123456789abcdef"


def released(**extra) -> Deployment:
    return succeeded(sha="b" * 40, subject="Release v2", release_dir=RELEASE, venv_key=KEY, **extra)


def test_history_has_a_release_column_and_searches_it(django_user_model):
    in_place = succeeded(sha="a" * 40, subject="In place")
    rolled = succeeded(sha="c" * 40, release_dir="20261203071500-cccccccccccc", venv_key=OTHER_KEY)
    release = released()
    client = client_for(django_user_model, "viewer")
    page = client.get(url("changelist")).content.decode()
    assert '<th scope="col" class="sortable column-release_display">' in page
    assert (
        f'<code class="zd-release">{RELEASE}</code><br>'
        f'<code class="zd-muted" title="venv">{KEY}</code>' in page
    )
    row = re.search(rf"<tr>.*?#{in_place.pk}<.*?</tr>", page, flags=re.S).group(0)
    assert 'class="field-release_display"><span class="zd-muted">—</span>' in row
    for term, expected in ((KEY, release), ("cccccccccccc", rolled), (OTHER_KEY, rolled)):
        found = client.get(url("changelist"), {"q": term}).content.decode()
        shown = {d.pk for d in (in_place, rolled, release) if f"#{d.pk}<" in found}
        assert shown == {expected.pk}, term


def test_detail_names_the_release_and_venv_and_draws_its_steps(django_user_model):
    record = released()
    steps = [
        ("fetch", 0.0, 0.5, "ok"),
        ("build", 0.5, 1.0, "ok"),
        ("venv", 1.5, 0.5, "ok"),
        ("compile", 2.0, 1.0, "ok"),
        ("switch", 3.0, 0.1, "rolled_back"),
        ("reload", 3.1, 2.9, "failed"),
        ("rollback:switch", 6.0, 2.0, "ok"),
    ]
    timed_steps(record, steps)
    page = client_for(django_user_model, "viewer").get(url("change", record.pk)).content.decode()
    assert f'<code class="zd-release">releases/{RELEASE}</code>' in page
    assert f'<code class="zd-release">venvs/{KEY}</code>' in page
    assert "Release directory" in page and "Venv key" in page
    timeline = page.split("<h2>Timeline</h2>")[1]
    names = re.findall(r'<span class="zd-timeline-name">([^<]+)</span>', timeline)
    assert names == [name for name, *_ in steps]
    bars = re.findall(r'zd-bar-(\w+)" style="margin-left:([\d.]+)%;width:([\d.]+)%"', timeline)
    assert bars[1] == ("ok", "6.25", "12.50")  # build: 0.5 s in, 1 s of the deploy's 8 s
    assert bars[-1] == ("ok", "75.00", "25.00")  # the switch back, at the end


def test_an_in_place_site_has_no_release_column_and_its_detail_says_so(django_user_model):
    record = succeeded()
    client = client_for(django_user_model, "viewer")
    assert "column-release_display" not in client.get(url("changelist")).content.decode()
    page = client.get(url("change", record.pk)).content.decode()
    assert "— (in place: no release directory)" in page
    assert "zd-release" not in page


def test_a_row_an_older_release_wrote_without_the_columns_renders(django_user_model):
    record = succeeded()
    with connection.cursor() as cursor:  # NULL: what an INSERT that does not name them leaves
        cursor.execute(
            "UPDATE django_zerodeploy_deployment SET release_dir = NULL, venv_key = NULL "
            "WHERE id = %s",
            [record.pk],
        )
    client = client_for(django_user_model, "viewer")
    assert f"#{record.pk}<" in client.get(url("changelist")).content.decode()
    page = client.get(url("change", record.pk)).content.decode()
    assert "— (in place: no release directory)" in page
