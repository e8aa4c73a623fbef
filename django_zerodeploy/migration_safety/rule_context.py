"""What a classification rule may look at besides the operation: the model state just before
it, the applied state the serving release knows, and small readers of state fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import models
from django.db.migrations.state import ProjectState


@dataclass
class RuleContext:
    """What the rules may look at besides the operation itself."""

    app_label: str
    stage: str  # PRE or POST
    state: ProjectState  # the project state just before the operation
    connection: Any  # the database connection (its vendor and column types)
    new_models: set[tuple[str, str]] = field(default_factory=set)  # created earlier in this plan
    baseline: ProjectState | None = None  # the applied state: what the serving (old) release knows

    def model_state(self, model_name: str) -> Any | None:
        return self.state.models.get((self.app_label, model_name.lower()))

    def old_field(self, model_name: str, name: str) -> models.Field | None:
        model = self.model_state(model_name)
        return model.fields.get(name) if model is not None else None

    def known_field(self, model_name: str, name: str) -> models.Field | None:
        """The field as the old release knows it (applied state), else as it is now."""
        if self.baseline is not None:
            model = self.baseline.models.get((self.app_label, model_name.lower()))
            if model is not None and name in model.fields:
                return model.fields[name]
        return self.old_field(model_name, name)

    def field_is_new(self, model_name: str, name: str) -> bool:
        """Added earlier in this plan: the old release has never used it."""
        if self.baseline is None:
            return False
        model = self.baseline.models.get((self.app_label, model_name.lower()))
        return (
            model is not None
            and name not in model.fields
            and self.old_field(model_name, name) is not None
        )

    def table(self, model_name: str) -> str:
        model = self.model_state(model_name)
        explicit = model.options.get("db_table") if model is not None else None
        return explicit or f"{self.app_label}_{model_name.lower()}"

    def is_new(self, model_name: str) -> bool:
        return (self.app_label, model_name.lower()) in self.new_models


def has_db_default(f: models.Field) -> bool:
    return getattr(f, "db_default", models.NOT_PROVIDED) is not models.NOT_PROVIDED


def column_name(name: str, f: models.Field) -> str:
    return f.db_column or (f"{name}_id" if f.is_relation and f.many_to_one else name)


class _EmptyModelState:
    options: dict[str, Any] = {}


EMPTY_MODEL_STATE = _EmptyModelState()


def together_of(ctx: RuleContext, model_name: str, option: str) -> set[tuple[str, ...]]:
    model = ctx.model_state(model_name)
    return normalise_together(model.options.get(option) if model is not None else None)


def normalise_together(value: Any) -> set[tuple[str, ...]]:
    if not value:
        return set()
    items = list(value)
    if items and isinstance(items[0], str):
        items = [items]
    return {tuple(item) for item in items}
