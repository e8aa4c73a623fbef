"""Migration safety: classify the pending plan, split it into pre-/post-deploy stages, and
apply a stage with PostgreSQL lock timeouts. See docs/migrations.md.

    verdict.py   the data: Verdict (one operation), PendingMigration (one migration)
    marker.py    what a migration says about itself (``zerodeploy = {...}``), PlanError
    classify.py  one operation against the model state before it -> Verdict, by the rule
                 its stage's table (rule_tables.py) names for the operation's class
    rules_pre.py, rules_post.py, rules_any_stage.py   the rules, by the release that serves
    rule_context.py  what a rule sees (RuleContext); column_types.py  wider or narrower
    plan.py      classify_pending(): every pending migration of this process -> MigrationPlan
    report.py    the operator's table, the refusal message, the ``plan --json`` document
    apply.py     apply_stage(): one stage, one migration at a time, with lock timeouts

This package's own import stays light (the data and the marker only): the deploy pipeline
reads plans back as data; the classifier and the executor load only where they run.
"""

from .marker import MARKER, Marker, PlanError, read_marker
from .verdict import POST, PRE, SAFE, UNKNOWN, UNSAFE, PendingMigration, Verdict

__all__ = [
    "MARKER",
    "Marker",
    "POST",
    "PRE",
    "PendingMigration",
    "PlanError",
    "SAFE",
    "UNKNOWN",
    "UNSAFE",
    "Verdict",
    "read_marker",
]
