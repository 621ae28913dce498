"""``--overwrite`` limited to the stages whose config changed.

Every stage directory of a run gets a fingerprint: the config sections its trained model and its
DONE.json metrics depend on (:func:`stage_fingerprints`). When a run directory holds another config,
``--overwrite`` compares the stored config's fingerprints with the new one's and removes only the
stage directories whose fingerprint differs or that the new config no longer has; the others are kept
(and skipped, or resumed from their checkpoint, by the run).

What a stage depends on (cumulative: a changed base redoes everything after it):
  * every stage: the top-level keys (device, bf16, use_vllm, judge_template, world, ...) except
    ``run_name``, ``output_dir``, ``seeds``, ``report_to``, ``keep_checkpoints`` and ``ddp_timeout``
    (where the run lives, which seeds, logging, disk use and a timeout do not change a stage), and the
    ``eval`` section: each stage's DONE.json holds its evaluation, and the eval sets are also the probe
    prompts of the downstream (and align.match_kl) trackers, so a changed eval setting redoes every stage
    (train + evaluate; there is no re-evaluate-only path);
  * base: ``base`` (its seed: the directory, ``base.seed`` when one base is shared);
  * align (one arm): the base's, the ``align`` section without ``arms``, and that arm's settings; with
    ``align.match_kl`` all arms (a later arm's stopping dose is the first arm's KL) and the tracker keys
    ``downstream.probe_prompts / probe_samples / kl_estimator``;
  * downstream (one arm, kind, dataset): the arm's, the ``downstream`` section with that dataset's
    ``per_dataset`` entry applied (without the list of kinds), the kind and the dataset spec.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from llm.config import (ConfigError, RunConfig, downstream_for, downstream_jobs, load_config, shared_base_seed,
                        to_dict)

#: top-level keys that change no stage's model or metrics
NOT_STAGE_KEYS = ("run_name", "output_dir", "seeds", "report_to", "keep_checkpoints", "ddp_timeout")
SECTIONS = ("base", "align", "downstream", "eval")


def _canon(x) -> str:
    return json.dumps(x, sort_keys=True, default=str)


def stage_fingerprints(cfg: RunConfig) -> dict[str, dict[str, str]]:
    """``{stage directory relative to the run directory: {part name: canonical JSON of that part}}``."""
    d = to_dict(cfg)
    top = {k: v for k, v in d.items() if k not in NOT_STAGE_KEYS and k not in SECTIONS}
    common = {"top-level keys": _canon(top), "eval": _canon(d["eval"]), "base": _canon(d["base"])}
    align = {k: v for k, v in d["align"].items() if k != "arms"}
    arms = {a["name"]: a for a in d["align"]["arms"]}
    tracker_keys = {k: d["downstream"][k] for k in ("probe_prompts", "probe_samples", "kl_estimator")}
    out: dict[str, dict[str, str]] = {}

    shared = shared_base_seed(cfg) is not None  # one base for every seed, at <run>/base
    if shared:
        out["base"] = dict(common)
    for seed in cfg.seeds:
        base = {**common, "seed": "shared" if shared else str(seed)}
        if not shared:
            out[f"seed{seed}/base"] = base
        for name, arm in arms.items():
            al = {**base, "align": _canon(align), f"arm {name}": _canon(arm)}
            if cfg.align.match_kl:
                al.update({"align.arms (match_kl)": _canon(d["align"]["arms"]),
                           "downstream tracker keys (match_kl)": _canon(tracker_keys)})
            out[f"seed{seed}/{name}/align"] = al
            for kind, ds, label in downstream_jobs(cfg):
                # the list of kinds is not a setting of one kind's stage (adding csft keeps the sft stage)
                settings = {k: v for k, v in to_dict(downstream_for(cfg, ds)).items() if k != "kinds"}
                out[f"seed{seed}/{name}/downstream/{label.replace('@', '_')}"] = {
                    **al, "downstream": _canon({**settings, "kind": kind, "dataset": ds})}
    return out


def limited_overwrite(run_dir: Path, cfg: RunConfig, log: Callable[[str], None]) -> tuple[list[str], list[str]]:
    """Remove the stage directories of ``run_dir`` whose config changed (see the module docstring); returns
    (kept, removed) stage names. A stored config that no longer loads removes the whole run directory."""
    try:
        old_cfg = load_config(str(run_dir / "config.yaml"))
    except (ConfigError, OSError, ValueError, TypeError) as exc:
        log(f"overwrite: the stored config.yaml does not load ({exc}); removing all of {run_dir}")
        shutil.rmtree(run_dir)
        return [], ["everything"]
    old, new = stage_fingerprints(old_cfg), stage_fingerprints(cfg)
    kept, removed = [], []
    for stage, parts in old.items():
        if not (run_dir / stage).exists():
            continue
        if new.get(stage) == parts:
            kept.append(stage)
            continue
        changed = ("not in the new config" if stage not in new else
                   "changed: " + ", ".join(k for k in sorted(set(parts) | set(new[stage]))
                                            if parts.get(k) != new[stage].get(k)))
        log(f"overwrite: remove {stage} ({changed})")
        shutil.rmtree(run_dir / stage)
        removed.append(stage)
    for stage in kept:
        log(f"overwrite: keep   {stage} (its config is unchanged)")
    for name in ("metrics.jsonl", "report.md", "provenance.json"):  # rebuilt by the run from the stages
        (run_dir / name).unlink(missing_ok=True)
    return kept, removed
