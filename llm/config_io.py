"""YAML I/O of the pipeline config: bundled configs by name, reading and merging YAML files, dotted
``key=value`` overrides, and the YAML text of a resolved config (``config.yaml`` of a run directory).

Generic over mappings: it imports nothing of ``llm.config``, which builds and validates the ``RunConfig``
from the mapping these functions produce (``llm.config.load_config``: defaults ← file ← overrides).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from llm.config_check import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
RECIPE_DIR = CONFIG_DIR / "recipes"
ACCELERATE_DIR = CONFIG_DIR / "accelerate"
# mapping-valued keys whose entries are free-form (validated by `validate`, not against a dataclass)
FREE_FORM = ("world", "per_dataset", "variants")


def resolve_config_path(path: str) -> Path:
    """A YAML path, or a bundled config's name: ``llm/configs/<name>.yaml`` or ``llm/configs/recipes/<name>.yaml``."""
    p = Path(path)
    if p.exists():
        return p
    for cand in (CONFIG_DIR / f"{path}.yaml", RECIPE_DIR / f"{path}.yaml"):
        if cand.exists():
            return cand
    bundled = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml")) + sorted(q.stem for q in RECIPE_DIR.glob("*.yaml"))
    raise ConfigError(f"config file {path!r} not found; give a YAML path or one of the bundled configs: "
                      f"{', '.join(bundled)}")


def _set_path(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node: Any = data
    for i, p in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            idx = int(p)
            node = node[idx]
            continue
        if p not in node or node[p] is None:
            node[p] = [] if nxt.isdigit() else {}
        node = node[p]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """``["align.steps=40", "seeds=[0,1]"]`` → ``[("align.steps", 40), ("seeds", [0, 1])]``."""
    out = []
    for ov in overrides:
        if "=" not in ov:
            raise ConfigError(f"override {ov!r} is not of the form key=value. Fix: write key=value, e.g. "
                              "align.steps=40")
        key, raw = ov.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {ov!r}: value {raw!r} is not valid YAML ({exc})") from None
        out.append((key.strip(), value))
    return out


def read_config_file(path: str) -> dict:
    """The mapping of sections held by a YAML file or a bundled config (see ``resolve_config_path``)."""
    p = resolve_config_path(path)
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
    return loaded


def apply_overrides(data: dict, overrides: list[str]) -> None:
    """Set every ``key=value`` override (``parse_overrides``) in the nested mapping ``data``, in place."""
    for key, value in parse_overrides(overrides):
        try:
            _set_path(data, key, value)
        except (IndexError, ValueError, TypeError, KeyError):
            raise ConfigError(f"override {key}={value!r}: no such list element or key path. Fix: check the "
                              "dotted path against dump_config() (list indices start at 0)") from None


def merge(base: dict, new: dict, prefix: str = "") -> dict:
    """``base`` updated by ``new``, section by section; a key of ``new`` not in ``base`` is an error listing the
    valid ones (the mappings in ``FREE_FORM`` are replaced whole, their entries checked by validation)."""
    out = dict(base)
    for k, v in new.items():
        if k not in base:
            valid = ", ".join(base)
            where = f" in section '{prefix}'" if prefix else ""
            raise ConfigError(f"unknown config key {k!r}{where}; valid keys: {valid}. Fix: use one of the "
                              "valid keys")
        if isinstance(v, dict) and isinstance(base[k], dict) and k not in FREE_FORM:
            out[k] = merge(base[k], v, f"{prefix}.{k}" if prefix else k)
        else:
            out[k] = v
    return out


def dump_yaml(data: dict) -> str:
    """A config mapping as YAML, keys in their given order."""
    return yaml.safe_dump(data, sort_keys=False)
