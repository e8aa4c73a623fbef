"""Which migrations a migrate command applied, read from its output."""

from __future__ import annotations

from django_zerodeploy.pipeline.migrations import applied_from_output


def test_applied_migrations_are_read_from_either_command():
    django_output = (
        "Operations to perform:\n  Apply all migrations: notes\nRunning migrations:\n"
        "  Applying notes.0002_tag... OK\n  Applying notes.0003_boom...Traceback (most recent call last):\n"
    )
    assert applied_from_output(django_output) == ["notes.0002_tag"]
    assert applied_from_output("applied notes.0002_tag\napplied shop.0007_price\n") == [
        "notes.0002_tag",
        "shop.0007_price",
    ]
