"""The releases layout: a directory and a virtualenv per release, switched in one step.

ROOT/releases/<timestamp>-<sha12>/        one release: a standalone checkout of that commit
ROOT/releases/<…>/.venv -> ROOT/venvs/<key>
ROOT/venvs/<key>/                         key: requirements files' contents + Python version
ROOT/shared/                              git-ignored state linked into every release
ROOT/current -> releases/<…>              switched atomically (rename over the old link)
ROOT/previous -> releases/<…>             what ``current`` was before the last switch

layout.py   detection, names, the ROOT object, per-release metadata
venvs.py    venv keys, building a venv where it will live, completeness markers
switch.py   the atomic switch of ``current`` (and ``previous``)
prune.py    KEEP_RELEASES: old releases and the venvs no kept release uses
"""
