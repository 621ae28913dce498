"""Launch-time checks of a run config: reward specs, local paths, the accelerate config.

A recipe parses with its ``/path/to/...`` placeholders (``llm.config`` validates types and ranges);
these checks run when a run starts (``llm.run.run``, after ``--dry-run`` substitution) and fail before
any training, naming every key to fill.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from llm.config import ConfigError, RunConfig, _check, downstream_for
from llm.config_io import ACCELERATE_DIR


def _looks_local_model(path: str) -> bool:
    """The judges' rule (llm.judges._load_pretrained): absolute, ./, ../, ~, or more than one '/'."""
    return path.startswith(("/", ".", "~")) or path.count("/") > 1


def spec_items(cfg: RunConfig) -> list[tuple[str, str, str]]:
    """(key, value, what) of every model / dataset / reward spec in ``cfg``; what ∈ model|dataset|reward."""
    items: list[tuple[str, str, str]] = []
    if cfg.base.model != "tiny-world":
        items.append(("base.model", cfg.base.model, "model"))
    if cfg.base.sft_dataset:
        items.append(("base.sft_dataset", cfg.base.sft_dataset, "dataset"))
    if cfg.align.dataset != "tiny-world":
        items.append(("align.dataset", cfg.align.dataset, "dataset"))
    items += [(f"align.reward_funcs.{i}", s, "reward") for i, s in enumerate(cfg.align.reward_funcs)]
    if cfg.align.helpfulness.startswith("reward_model:"):
        items.append(("align.helpfulness", cfg.align.helpfulness, "reward"))
    items += [(f"downstream.datasets.{i}", s, "dataset") for i, s in enumerate(cfg.downstream.datasets)]
    for ds in cfg.downstream.datasets:
        funcs = downstream_for(cfg, ds).reward_funcs
        key = f"downstream.per_dataset.{ds}" if "reward_funcs" in cfg.downstream.per_dataset.get(ds, {}) \
            else "downstream"
        items += [(f"{key}.reward_funcs.{i}", s, "reward") for i, s in enumerate(funcs)]
    e = cfg.eval
    items += [(f"eval.{k}", getattr(e, k), "dataset") for k in ("harmful_dataset", "benign_dataset", "math_dataset")
              if getattr(e, k) not in ("auto", "none")]
    items += [(f"eval.variants.{n}", s, "dataset") for n, s in e.variants.items()]
    items.append(("eval.judge", e.judge, "reward"))
    return list(dict.fromkeys(items))  # a shared downstream reward spec is listed once per key


def check_specs(cfg: RunConfig, *, check_paths: bool = True) -> None:
    """Reward specs name a known reward or judge, asset names (llm.assets) a known asset; with ``check_paths``,
    every local path exists and every named asset is fetched into the cache (or found there).

    Called when a run starts (after ``--dry-run`` substitution), so that the placeholder paths of a recipe
    fail before any training; one error lists every missing path with the key to set, and an asset that
    cannot be had (offline and uncached) fails here with the command that fetches it. Hub ids are not
    looked up here.
    """
    from llm.assets import AssetError, is_asset_spec, model_path
    from llm.dataset_assets import check_asset_spec, dataset_asset_rows
    from llm.data import looks_local
    from llm.rewards import JUDGES, REWARDS as REWARD_FUNCS, VALID_NAMES

    missing: list[str] = []
    for key, value, what in spec_items(cfg):
        if what == "reward":
            kind, sep, path = value.partition(":")
            if value in REWARD_FUNCS:
                continue
            if not sep or kind not in JUDGES or not path:
                raise ConfigError(f"{key}={value!r} is not a reward spec; valid: {', '.join(VALID_NAMES)}")
            if check_paths and _looks_local_model(path) and not Path(path).expanduser().is_dir():
                missing.append(f"{key}={value!r}: the local {kind} judge directory {path!r} does not exist. "
                               f"Download the judge (e.g. `huggingface-cli download <repo> --local-dir DIR`) and "
                               f"set {key}={kind}:DIR, or give a hub id")
            continue
        if value.startswith("tiny-world:"):
            continue
        if is_asset_spec(value):  # a named asset (llm.assets): known name, fetched into the cache at launch
            try:
                check_asset_spec(value, what)
                if check_paths:
                    model_path(value) if what == "model" else dataset_asset_rows(value)
            except AssetError as exc:
                raise ConfigError(f"{key}: {exc}") from None
            continue
        local = _looks_local_model(value) if what == "model" else looks_local(value)
        if check_paths and local and not Path(value).expanduser().exists():
            missing.append(f"{key}={value!r}: the local {what} path does not exist; create it (recipes leave "
                           f"placeholders to fill) and set {key}=<path>, or give a hub id")
    e = cfg.eval
    if e.judge not in ("keyword_safety",) and e.judge.partition(":")[0] not in JUDGES:
        raise ConfigError(f"eval.judge={e.judge!r} is not a harmfulness judge; allowed: keyword_safety, "
                          f"{', '.join(f'{k}:<path>' for k in JUDGES)}")
    if missing:
        head = "a local path does not exist" if len(missing) == 1 else f"{len(missing)} local paths do not exist"
        raise ConfigError(f"{head}:\n  " + "\n  ".join(missing))
    if cfg.accelerate_config:
        load_accelerate_config(cfg.accelerate_config, key="accelerate_config")


ACCELERATE_REQUIRED = ("compute_environment", "distributed_type", "mixed_precision", "num_machines",
                       "num_processes", "machine_rank")


def load_accelerate_config(name_or_path: str, key: str = "accelerate_config") -> dict:
    """Parse an accelerate config (bundled name zero2 | zero3 | fsdp, or a path) and check what the pipeline needs.

    Checks: accelerate's own loader accepts it (it rejects unknown keys), the keys of
    :data:`ACCELERATE_REQUIRED` are present; DEEPSPEED: ``deepspeed_config.zero_stage`` ∈ {0,1,2,3} and, for
    ZeRO-3, ``zero3_save_16bit_model: true`` (else ``trainer.save_model`` writes no usable weights); FSDP:
    ``fsdp_config.fsdp_state_dict_type: FULL_STATE_DICT`` (the pipeline saves full models). Returns the mapping.
    """
    p = Path(name_or_path).expanduser()
    if not p.exists() and (ACCELERATE_DIR / f"{name_or_path}.yaml").exists():
        p = ACCELERATE_DIR / f"{name_or_path}.yaml"
    if not p.exists():
        bundled = sorted(q.stem for q in ACCELERATE_DIR.glob("*.yaml"))
        raise ConfigError(f"{key}={name_or_path!r} not found; give a path or one of {', '.join(bundled)}")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}: {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{key}: {p} must hold a mapping")
    missing = [k for k in ACCELERATE_REQUIRED if k not in data]
    if missing:
        raise ConfigError(f"{key}: {p} lacks {missing}; see llm/configs/accelerate/zero2.yaml")
    from accelerate.commands.config.config_args import load_config_from_file

    try:
        load_config_from_file(str(p))
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{key}: accelerate rejects {p}: {exc}") from None
    kind = data["distributed_type"]
    if kind == "DEEPSPEED":
        ds = data.get("deepspeed_config") or {}
        stage = ds.get("zero_stage")
        _check(stage in (0, 1, 2, 3), f"{key}: deepspeed_config.zero_stage", stage, "0 | 1 | 2 | 3")
        if stage == 3:
            _check(ds.get("zero3_save_16bit_model") is True, f"{key}: deepspeed_config.zero3_save_16bit_model",
                   ds.get("zero3_save_16bit_model"), "true with ZeRO-3",
                   "trainer.save_model must gather the sharded weights into one 16-bit model")
    elif kind == "FSDP":
        fs = data.get("fsdp_config") or {}
        _check(fs.get("fsdp_state_dict_type") == "FULL_STATE_DICT", f"{key}: fsdp_config.fsdp_state_dict_type",
               fs.get("fsdp_state_dict_type"), "FULL_STATE_DICT", "the pipeline saves and reloads full models")
    _check(isinstance(data["num_processes"], int) and data["num_processes"] >= 1, f"{key}: num_processes",
           data["num_processes"], ">= 1")
    return data
