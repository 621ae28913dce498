"""Every document the repository cites is in the repository.

The team's design notes and the source papers live outside the project; a docstring that points to
them leaves a user with nothing behind the reference. Three checks over every tracked text file:
no citation of an outside document (the shared notes directory, the design-note files, the paper
seed files), every ``docs/...`` path exists, and every relative Markdown link resolves.
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

# Documents outside the repository, as they are cited. Case-sensitive: docs/theory.md is fine,
# the upper-case design-note names are not. The names are assembled so this file does not cite them.
_NOTES = ("THEORY", "TINY_WORLD", "STYLE")
_SEEDS = ("frpo_robust_policy_optimization", "csft_pa_preference_augmented_alignment",
          "rlvr_safety_drift_summary")
OUTSIDE = [
    ("the shared notes directory", re.compile(r"(?<![\w.-])(?:\.\./)*" + "shared" + r"/")),
    *((f"{n}.md", re.compile(r"(?<![\w-])" + n + r"\.md\b")) for n in _NOTES),
    *((f"{s}.txt", re.compile(re.escape(s) + r"\.txt")) for s in _SEEDS),
]
DOCS_PATH = re.compile(r"(?<![\w./-])docs/[\w./-]*[\w/]")
MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SKIP_DIRS = {".git", ".venv", "runs", "results", "build", "dist", "__pycache__", ".pytest_cache",
             ".hypothesis", ".ipynb_checkpoints"}


def tracked_files() -> list[str]:
    """Tracked files (git), or every file under the root outside build/cache folders without git."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            files += [(Path(dirpath) / f).relative_to(ROOT).as_posix() for f in filenames]
    assert files, f"found no files under {ROOT}"
    return files


def _text(path: str) -> str | None:
    try:
        return (ROOT / path).read_text(encoding="utf-8")
    except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
        return None  # binary, or deleted in the work tree but still in the index


def problems_in(path: str, text: str, exists=lambda p: (ROOT / p).exists()) -> list[str]:
    """Every citation in ``text`` (the file at repository path ``path``) of a document not in the repository."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        where = f"{path}:{lineno}"
        for what, pattern in OUTSIDE:
            if pattern.search(line):
                found.append(f"{where}: cites {what}, which is not in the repository: {line.strip()[:120]}")
        for m in DOCS_PATH.finditer(line):
            target = m.group(0).rstrip("./")
            if not exists(target):
                found.append(f"{where}: cites {target}, which does not exist")
        if path.endswith(".md"):
            for m in MD_LINK.finditer(line):
                link = m.group(1).split("#")[0]
                if not link or re.match(r"^[a-z][a-z0-9+.-]*:", link):  # anchors and URLs
                    continue
                target = os.path.normpath(os.path.join(os.path.dirname(path), link))
                if not exists(target):
                    found.append(f"{where}: links to {link}, which does not exist")
    return found


def test_no_file_cites_a_document_outside_the_repository():
    problems = []
    for path in tracked_files():
        if path == SELF:
            continue
        text = _text(path)
        if text is not None:
            problems += problems_in(path, text)
    assert not problems, "\n".join([f"{len(problems)} citations of missing documents:"] + problems)


def test_the_cited_docs_exist_and_are_not_empty():
    for doc in ("docs/theory.md", "docs/tiny_world.md"):
        assert (ROOT / doc).is_file(), doc
        assert len((ROOT / doc).read_text(encoding="utf-8")) > 2000, doc


def _ledger_ids() -> set[str]:
    import importlib

    from theory import ledger

    for path in sorted((ROOT / "theory").glob("claims_*.py")):
        importlib.import_module(f"theory.{path.stem}")
    return {c.id for c in ledger.REGISTRY}


def test_every_ledger_row_docs_theory_cites_exists():
    text = (ROOT / "docs" / "theory.md").read_text(encoding="utf-8")
    cited = set(re.findall(r"`((?:frpo|csft|rlvr)\.[a-z0-9_]+)`", text))
    assert len(cited) >= 20, f"docs/theory.md cites only {len(cited)} ledger rows"
    missing = sorted(cited - _ledger_ids())
    assert not missing, f"docs/theory.md cites ledger rows that do not exist: {missing}"


@pytest.mark.parametrize(("text", "n"), [
    ("see " + "THEORY" + ".md §1", 1),
    ("design in ``" + "shared" + "/" + "TINY_WORLD" + ".md``", 2),
    ("as in ../" + "shared" + "/seeds/x.txt", 1),
    ("seed ``" + _SEEDS[0] + ".txt``", 1),
    ("details in docs/nowhere.md §3", 1),
    ("[guide](docs/missing.md#part)", 2),
    ("[sibling](missing_sibling.md)", 1),
    ("see docs/theory.md §2 and [the world](docs/tiny_world.md)", 0),
    ("https://huggingface.co/docs/trl/index and [web](https://example.org/x.md)", 0),
    ("shared state; a /usr/share/ path; the theory.md of docs/theory.md", 0),
])
def test_the_scanner_catches_planted_citations(text, n):
    exists = {"docs/theory.md", "docs/tiny_world.md"}.__contains__
    assert len(problems_in("README.md", text, exists=exists)) == n
