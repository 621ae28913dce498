"""Small CLI and output helpers shared by the toy experiments (toy/bandit.py, the LSTM toy).

What lives here, and only this: an argument parser built from an args dataclass (help text = the
field's docstring, presets layered under explicit options, one-line errors with exit code 2),
JSON/NPZ writers, mean ± 95% t-interval over seeds, a progress bar and a plain-text table.
No math of the papers lives here (that is ``theory/``).

Usage in an experiment::

    @dataclass
    class Args:
        seeds: int = 4
        \"\"\"Number of seeds (a batch dimension).\"\"\"
        def __post_init__(self):            # raise ValueError("...") for a bad value
            ...

    args = parse_args(Args, argv, presets={"smoke": {"seeds": 2}}, description=__doc__)
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from theory.stats import mean_ci_axis  # the one home of the t-interval (not theory.stats.mean_ci, which returns a MeanCI)

__all__ = ["field_docs", "parse_args", "write_json", "mean_ci_axis", "ci_dict", "fmt_ci", "progress", "format_table"]


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """Map each dataclass field to the string literal written right below it (its docstring)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs: dict[str, str] = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line on stderr and exits with code 2."""

    def error(self, message: str) -> typing.NoReturn:  # noqa: D102
        self.exit(2, f"{self.prog}: error: {message}\n")


def _float(text: str) -> float:
    try:
        return float(text)  # accepts "inf"
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _tuple_of(elem):
    def convert(text: str) -> tuple:
        parts = [p for p in text.replace(" ", "").split(",") if p]
        if not parts:
            raise argparse.ArgumentTypeError("expected a comma-separated list, e.g. 0.1,0.5,inf")
        try:
            return tuple(elem(p) for p in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {elem.__name__}") from None
    return convert


def _converter(tp: Any):
    origin = typing.get_origin(tp)
    if origin is tuple:
        elem = typing.get_args(tp)[0]
        return _tuple_of(float if elem is float else elem), "LIST"
    if tp is float:
        return _float, "X"
    if tp is int:
        return int, "N"
    return str, "S"


def parse_args(cls: type, argv: Optional[Sequence[str]], *, presets: Mapping[str, Mapping[str, Any]],
               description: str = "", prog: Optional[str] = None, choices: Optional[Mapping[str, Sequence]] = None):
    """Build ``cls`` (a dataclass) from the command line: defaults ← ``--preset`` ← explicit options.

    Every field becomes ``--field-name`` (bools: ``--x/--no-x``; tuples: comma-separated lists) with
    the field's docstring as help. ``cls(**values)`` is expected to raise ``ValueError`` for a bad
    value; that and every parse error end the program with one line on stderr and exit code 2.
    Returns ``(args, preset_name)``. Hand-written rather than tyro: tyro's errors are multi-line boxes
    (docs/architecture.md, "Hand-written parts and why").
    """
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    parser = _OneLineParser(prog=prog, description=description,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(presets), default=None,
                        help="named set of defaults, overridden by any other option given: "
                             + "; ".join(f"{k}: {dict(v)}" for k, v in presets.items()))
    choices = choices or {}
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_text = f"{docs.get(f.name, '')} (default: {shown})"
        tp = hints[f.name]
        if tp is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            conv, metavar = _converter(tp)
            parser.add_argument(flag, type=conv, default=None, metavar=metavar,
                                choices=choices.get(f.name), help=help_text)
    ns = parser.parse_args(argv)
    values: dict[str, Any] = dict(presets[ns.preset]) if ns.preset else {}
    values.update({k: v for k, v in vars(ns).items() if k != "preset" and v is not None})
    try:
        return cls(**values), ns.preset
    except ValueError as err:
        parser.error(str(err))


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else (None if math.isnan(obj) else ("inf" if obj > 0 else "-inf"))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as indented JSON; NaN → null, ±inf → "inf"/"-inf" (strict JSON, no NaN tokens)."""
    Path(path).write_text(json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")


def ci_dict(x: np.ndarray) -> dict:
    """{"mean", "ci95", "n"} of a 1-D sample (one value per seed) for summary.json."""
    m, h, n = mean_ci_axis(np.asarray(x).reshape(-1))
    return {"mean": float(m), "ci95": float(h), "n": int(n)}


def progress(iterable: Iterable, desc: str, enabled: bool = True, **kw):
    """tqdm progress bar on stderr; silent when ``enabled`` is False or stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=None if enabled else True, file=sys.stderr,
                dynamic_ncols=True, leave=False, **kw)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned plain-text table (header, rule, rows)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def fmt_ci(mean: float, half: float, digits: int = 3) -> str:
    """'m ± h' (or 'm' when the interval is undefined)."""
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {half:.{digits}f}" if math.isfinite(half) else "")


def load_or_run(module, results_dir, budget: str) -> tuple[Path, str]:
    """A finished toy run directory for notebooks: ``results_dir`` if given, else a fresh run.

    ``module`` is ``toy.bandit`` or ``toy.lstm``. With ``results_dir`` it must hold ``summary.json``;
    without, ``module.main(["--preset", budget, ...])`` runs into a temporary directory with its printed
    tables captured (the last line is returned as the message). The toys write their PNGs with the
    Agg backend: a notebook re-enables inline display with ``%matplotlib inline`` after the call.
    """
    import contextlib
    import io
    import tempfile

    name = module.__name__
    if results_dir:
        run_dir = Path(results_dir)
        if not (run_dir / "summary.json").is_file():
            raise FileNotFoundError(f"results_dir={str(results_dir)!r} has no summary.json; run "
                                    f"`python -m {name} --out DIR` first or leave it unset")
        return run_dir, f"loading saved results from {run_dir}"
    run_dir = Path(tempfile.mkdtemp(prefix=f"frtk_{name.split('.')[-1]}_"))
    with contextlib.redirect_stdout(io.StringIO()) as log:
        module.main(["--preset", budget, "--out", str(run_dir), "--no-progress"])
    last = (log.getvalue().strip().splitlines() or [""])[-1]
    return run_dir, f"no saved results given: running {name} --preset {budget} into {run_dir}\n{last}"
