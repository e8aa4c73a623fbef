"""Column types as the database sees them, and whether a change widens or narrows them: old
values still fit a wider column; a narrower or incompatible one breaks the other release."""

from __future__ import annotations

import re
from typing import Any

from django.db import models


def _db_type(f: models.Field, connection: Any) -> str | None:
    """The column type of a state field, without rendering models (relations: their target)."""
    if f.is_relation:
        remote = f.remote_field
        target = getattr(remote, "model", None)
        label = (
            target
            if isinstance(target, str)
            else getattr(getattr(target, "_meta", None), "label_lower", "")
        )
        return f"fk:{str(label).lower()}:{getattr(remote, 'field_name', None) or 'pk'}"
    try:
        return f.db_type(connection)
    except Exception:  # noqa: BLE001 - a custom field that needs a bound model
        return f"{type(f).__module__}.{type(f).__name__}"


_VARCHAR = re.compile(r"^(?:varchar|character varying)\((\d+)\)$")


_DECIMAL = re.compile(r"^(?:numeric|decimal)\((\d+),\s*(\d+)\)$")


_LADDERS = (
    ("smallint", "integer", "bigint"),
    ("smallserial", "serial", "bigserial"),
    ("real", "double precision"),
)


def type_change(
    old: models.Field, new: models.Field, connection: Any
) -> tuple[str, str, str] | None:
    """(old type, new type, 'wider' | 'narrower' | 'incompatible'), or None if unchanged."""
    old_type, new_type = _db_type(old, connection), _db_type(new, connection)
    if old_type == new_type:
        return None
    a, b = str(old_type).lower().strip(), str(new_type).lower().strip()
    return str(old_type), str(new_type), compare_types(a, b)


def compare_types(a: str, b: str) -> str:
    va, vb = _VARCHAR.match(a), _VARCHAR.match(b)
    if va and vb:
        return "wider" if int(vb.group(1)) > int(va.group(1)) else "narrower"
    if va and b == "text":
        return "wider"
    if vb and a == "text":
        return "narrower"
    da, db = _DECIMAL.match(a), _DECIMAL.match(b)
    if da and db:
        pa, sa, pb, sb = (int(x) for x in (*da.groups(), *db.groups()))
        if sb >= sa and pb - sb >= pa - sa:
            return "wider"
        if sb <= sa and pb - sb <= pa - sa:
            return "narrower"
        return "incompatible"
    for ladder in _LADDERS:
        # "integer unsigned" (SQLite's PositiveIntegerField) climbs the same ladder as "integer"
        base_a = a if a in ladder else a.split()[0]
        base_b = b if b in ladder else b.split()[0]
        if base_a in ladder and base_b in ladder:
            return "wider" if ladder.index(base_b) > ladder.index(base_a) else "narrower"
    return "incompatible"
