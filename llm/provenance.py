"""Where a run's numbers came from: commit, command, library versions and a fingerprint of the code that ran.

``llm.run`` writes ``provenance.json`` into every run directory. Its ``code`` entry maps each module of
this project (``llm.*``, ``theory.*``) that the run imported to a fingerprint of that module's code: the
SHA-256 of its abstract syntax tree with docstrings removed, so comments, docstrings and formatting do not
count, while any change of behaviour does. :mod:`llm.results` uses it to refuse README numbers that the
current code would no longer produce.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import platform
import subprocess
import sys
from pathlib import Path
from typing import Optional

PACKAGES = ("llm", "theory")


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def fingerprint_source(source: str) -> str:
    """SHA-256 (hex, 16 chars) of the code's AST without docstrings: comments and formatting do not count."""
    tree = _strip_docstrings(ast.parse(source))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()[:16]


def module_path(name: str) -> Optional[Path]:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def fingerprint_modules(names) -> dict[str, str]:
    """{module: fingerprint} of the given importable modules (missing ones map to "missing")."""
    out = {}
    for name in sorted(names):
        path = module_path(name)
        out[name] = fingerprint_source(path.read_text()) if path is not None else "missing"
    return out


def loaded_project_modules() -> list[str]:
    """The project's modules (llm.*, theory.*) imported in this process, the ``python -m`` entry point included
    (it runs as ``__main__``, under its own name only in its spec)."""
    names = {m for m in list(sys.modules) if m.split(".")[0] in PACKAGES}
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is not None and main_spec.name.split(".")[0] in PACKAGES:
        names.add(main_spec.name)
    return sorted(m for m in names if module_path(m) is not None)


def source_at(commit: str, module: str, repo: Optional[Path] = None) -> str:
    """The source of ``module`` at ``commit`` ("+dirty" ignored), from git."""
    repo = repo or Path(__file__).resolve().parents[1]
    rel = module.replace(".", "/") + ".py"
    res = subprocess.run(["git", "show", f"{commit.split('+')[0]}:{rel}"], cwd=repo, capture_output=True, text=True,
                         timeout=30)
    if res.returncode != 0:
        raise ValueError(f"cannot read {rel} at commit {commit!r} ({res.stderr.strip()}); the results' provenance "
                         "needs the git history: run in a clone of the repository, or rerun `make results`")
    return res.stdout


def git_commit(repo: Optional[Path] = None) -> str:
    """HEAD's commit (with "+dirty" when tracked files differ from it), or "unknown" outside git."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    """Python, platform and the versions of the libraries that decide the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "trl", "peft", "accelerate", "numpy", "scipy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


def provenance(command: str, wall_s: float) -> dict:
    """The provenance record of a finished run (see the module docstring)."""
    return {"command": command, "commit": git_commit(), "wall_s": round(wall_s, 1), "versions": versions(),
            "code": fingerprint_modules(loaded_project_modules())}


def stale_modules(recorded: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Modules whose current fingerprint differs from ``recorded``: {module: (recorded, now)}."""
    now = fingerprint_modules(recorded)
    return {m: (recorded[m], now[m]) for m in recorded if recorded[m] != now[m]}
