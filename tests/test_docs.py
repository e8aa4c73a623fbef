"""The documentation is written for operators and complete: no project-internal wording in
docs/ or the README, every page in the MkDocs menu, and every error message a command can print
(each ``CommandFailure`` in the package) explained on the troubleshooting page."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

# Words of the people who build the project, not of those who run it.
INTERNAL = [
    r"\bthe issue\b",
    r"\bthis issue\b",
    r"\bour issues?\b",
    r"(?<!Gunicorn )(?<!django-q2 )(?<!upstream )(?<!kubernetes )\bissues? #?\d+",
    r"\bseed\b",
    r"\btargets? of the\b",
    r"\btargets? (?:was|were|is|are) (?:not )?(?:met|missed)\b",
    r"\btarget [0-9≥≤<>]",
    r"\b[\d.]+ ?x target\b",
    r"\bthe brief\b",
    r"\b(?:this|last|previous|next) session\b",
    r"\bour (?:tests?|measurements?|benchmarks?)\b",
    r"\btests? prove\b",
    r"\b(?:of ours|our (?:hooks?|config\w*|code|command))\b",
    r"\breviewers?\b",
    r"\bhelpers?\.md\b",
    r"\bfield[_ ]notes\b",
]


def _texts() -> list[Path]:
    return [*PAGES, ROOT / "README.md"]


@pytest.mark.parametrize("path", _texts(), ids=lambda p: p.name)
def test_no_internal_wording(path: Path) -> None:
    text = path.read_text()
    found = []
    for pattern in INTERNAL:
        for match in re.finditer(pattern, text, re.IGNORECASE):
            line = text.count("\n", 0, match.start()) + 1
            found.append(f"{path.name}:{line}: {match.group(0)!r}")
    assert not found, "\n".join(found)


def test_the_wording_check_catches_internal_phrases() -> None:
    samples = [
        "Against the targets of the issue:",
        "0.27x the script (target 0.3x)",
        "the seed's script",
        "as the last session found",
        "our tests prove it",
        "a Gunicorn without any config of ours",
    ]
    for sample in samples:
        assert any(re.search(p, sample, re.IGNORECASE) for p in INTERNAL), sample
    for fine in ("Gunicorn issue #2443", "the target commit", "a login session's directory"):
        assert not any(re.search(p, fine, re.IGNORECASE) for p in INTERNAL), fine


def _nav_pages(config: str) -> set[str]:
    return set(re.findall(r":\s*([\w./-]+\.md)\s*$", config, re.MULTILINE))


def test_every_page_is_in_the_menu() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    listed = _nav_pages(config)
    pages = {p.name for p in PAGES}
    assert pages - listed == set(), "pages missing from mkdocs.yml nav"
    assert listed - pages == set(), "nav entries without a page"
    assert re.search(r"^site_url: https://", config, re.MULTILINE)
    assert re.search(r"^repo_url: https://", config, re.MULTILINE)


def test_index_links_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    linked = set(re.findall(r"\]\(([\w-]+\.md)(?:#[\w-]+)?\)", index))
    assert {p.name for p in PAGES} - {"index.md"} - linked == set()


def _leading_text(node: ast.expr) -> str:
    """The literal beginning of a message (up to its first placeholder)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        out = ""
        for value in node.values:
            if not isinstance(value, ast.Constant):
                return out
            out += value.value
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _leading_text(node.left)
        return left
    return ""


def failure_messages() -> list[tuple[str, str]]:
    found = []
    for path in sorted((ROOT / "django_zerodeploy").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "CommandFailure"
                and node.args
            ):
                found.append((f"{path.name}:{node.lineno}", _leading_text(node.args[0])))
    return found


def _normal(text: str) -> str:
    text = re.sub(r"<[^>]*>", "", text.replace("`", "").replace("*", ""))
    return " ".join(text.split())


def test_troubleshooting_explains_every_error_message() -> None:
    page = _normal((DOCS / "troubleshooting.md").read_text())
    messages = failure_messages()
    assert len(messages) > 30  # the scan found the package's messages
    missing = []
    for where, lead in messages:
        lead = _normal(lead)
        if len(lead) >= 12 and lead not in page:
            missing.append(f"{where}: {lead!r}")
    assert not missing, (
        "explain these messages (their beginning, as printed) on docs/troubleshooting.md, "
        "each with its fix:\n" + "\n".join(missing)
    )
    for code in range(5):
        assert f"## Exit {code}:" in page


def test_images_exist_and_are_used() -> None:
    text = "\n".join(p.read_text() for p in PAGES)
    referenced = set(re.findall(r"\]\((img/[\w.-]+\.png)\)", text))
    present = {f"img/{p.name}" for p in (DOCS / "img").glob("*.png")}
    assert referenced, "the admin page shows screenshots"
    assert referenced - present == set(), "missing images"
    assert present - referenced == set(), "images no page shows"
    for name in present:
        assert (DOCS / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "path",
    [p for p in _texts() if p.name not in ("development.md", "architecture.md", "README.md")],
    ids=lambda p: p.name,
)
def test_operator_pages_hold_no_test_inventory(path: Path) -> None:
    """Which test covers what belongs on the development page, not in an operator's way."""
    found = re.findall(r"\btests/[\w/.]+|\btest_\w+(?:\.py)?", path.read_text())
    assert not found, found
