"""The records use the shared helpers (osutil), not copies of them."""

from __future__ import annotations

from django_zerodeploy.pipeline import records


def test_records_use_the_shared_helpers():
    from django_zerodeploy import osutil

    assert records.os_user is osutil.os_user
    assert not hasattr(records, "elapsed")
