"""Datasets of the pipeline by spec: the tiny world's splits, local files, or hub ids, as TRL rows.

A dataset spec is one string:

    tiny-world:<split>[+<split>...]      the embedded world (e.g. tiny-world:harmful_train+benign_lookalike)
    /abs/path.jsonl | ./rel.parquet      a local .jsonl / .json / .parquet / .csv file (never the network)
    <hub id>[:<config>][@<split>]        a hub dataset, split "train" by default
                                         (tatsu-lab/alpaca, openai/gsm8k:main, HuggingFaceH4/MATH-500@test)
    <asset>[:<part>][+<asset>...]        a named asset without '/' (llm.assets, llm.textsets): harmbench,
                                         harmbench:train, harmbench:heldout, donotanswer, lookalikes:heldout,
                                         refusals+lookalikes:train, arith:affirm, ...; fetched into the
                                         cache once; an unknown name is an error listing the valid ones

Records are mapped to TRL conversational rows ``{"prompt": [messages], "completion": [message]?,
"answer"?, "kind"?, "topic"?}`` by :func:`normalize_record`, which recognises the common shapes
(prompt/completion, messages, Alpaca, GSM8K, MATH, OpenCodeInstruct, AdvBench/HarmBench/StrongREJECT
prompts); anything else is an error that lists the record's columns.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Optional

TINY_PREFIX = "tiny-world:"
LOCAL_SUFFIXES = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
# single prompt-column shapes of safety benchmarks: AdvBench (goal), HarmBench (Behavior),
# StrongREJECT (forbidden_prompt), plain prompt lists (prompt / instruction without output)
PROMPT_ONLY_COLUMNS = ("prompt", "goal", "Behavior", "behavior", "forbidden_prompt", "instruction", "question")


def looks_local(spec: str) -> bool:
    """True if ``spec`` names a local file or directory (absolute, ./, ../, ~, or a known file suffix).

    Same rule as the judges' loader (``llm.judges._load_pretrained``): such a path must exist; it is
    never looked up on the hub.
    """
    return spec.startswith((os.sep, "./", "../", "~")) or Path(spec).suffix in LOCAL_SUFFIXES


def parse_hub_spec(spec: str) -> tuple[str, Optional[str], str]:
    """``"openai/gsm8k:main@test"`` → ``("openai/gsm8k", "main", "test")``; config None, split "train" by default."""
    rest, _, split = spec.partition("@")
    name, _, config = rest.partition(":")
    if not name:
        raise ValueError(f"dataset spec {spec!r} has no hub id; use <org/name>[:<config>][@<split>]")
    return name, (config or None), (split or "train")


def load_rows(spec: str, world=None) -> list[dict]:
    """Raw records of a dataset spec (see the module docstring); no column mapping."""
    if spec.startswith(TINY_PREFIX):
        if world is None:
            raise ValueError(f"dataset {spec!r} needs the tiny world, which this run does not build; "
                             "give a local JSONL/parquet path or a hub id")
        names = [s for s in spec[len(TINY_PREFIX):].split("+") if s]
        splits = world.splits()
        bad = [n for n in names if n not in splits]
        if bad or not names:
            raise ValueError(f"unknown tiny-world split(s) {bad or names}; valid: {', '.join(sorted(splits))}")
        return [dict(r) for n in names for r in splits[n]]
    from llm.assets import is_asset_spec
    from llm.dataset_assets import dataset_asset_rows

    if is_asset_spec(spec):
        return [dict(r) for r in dataset_asset_rows(spec)]
    from datasets import load_dataset

    if looks_local(spec):
        p = Path(spec).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"dataset file {spec!r} does not exist; give an existing local file or a hub id")
        fmt = LOCAL_SUFFIXES.get(p.suffix)
        if fmt is None:
            raise ValueError(f"dataset file {spec!r} must end in one of {sorted(LOCAL_SUFFIXES)}")
        ds = load_dataset(fmt, data_files=str(p), split="train")
    else:
        name, config, split = parse_hub_spec(spec)
        ds = load_dataset(name, config, split=split)
    return [dict(r) for r in ds]


def _as_messages(prompt: Any, system_prompt: str = "") -> list[dict]:
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    if system_prompt and not any(m.get("role") == "system" for m in msgs):
        msgs = [{"role": "system", "content": system_prompt}] + msgs
    return msgs


def _last_boxed(text: str) -> Optional[str]:
    from llm.rewards import boxed_contents

    boxes = boxed_contents(text or "")
    return boxes[-1] if boxes else None


def normalize_record(rec: dict, system_prompt: str = "") -> dict:
    """One record → a TRL conversational row ``{"prompt", "completion"?, "answer"?, "kind"?, "topic"?}``.

    Shapes, first match wins: ``prompt`` (+ ``completion``); ``messages`` (the last assistant turn
    is the completion); Alpaca ``instruction``/``input``/``output``; GSM8K ``question``/``answer``
    (``answer`` kept whole: the math reward reads the part after ``####``); MATH ``problem``/
    ``solution`` (+ ``answer``, else the last ``\\boxed{}`` of the solution); OpenCodeInstruct
    ``input``/``output``; a single prompt column (AdvBench ``goal``, HarmBench ``Behavior``,
    StrongREJECT ``forbidden_prompt``). ``system_prompt`` is prepended as a system message unless the
    prompt has one.
    """
    row: dict[str, Any] = {}
    if "prompt" in rec and rec["prompt"] is not None:
        row["prompt"] = rec["prompt"]
        if rec.get("completion") is not None:
            row["completion"] = rec["completion"]
    elif isinstance(rec.get("messages"), list) and rec["messages"]:
        msgs = [dict(m) for m in rec["messages"]]
        if msgs[-1].get("role") == "assistant" and len(msgs) > 1:
            row["prompt"], row["completion"] = msgs[:-1], [msgs[-1]]
        else:
            row["prompt"] = msgs
    elif "instruction" in rec and "output" in rec:
        extra = (rec.get("input") or "").strip()
        row["prompt"] = rec["instruction"] + (f"\n\n{extra}" if extra else "")
        row["completion"] = rec["output"]
    elif "question" in rec and "answer" in rec:
        row["prompt"], row["completion"], row["answer"] = rec["question"], rec["answer"], rec["answer"]
    elif "problem" in rec:
        row["prompt"] = rec["problem"]
        if rec.get("solution"):
            row["completion"] = rec["solution"]
        answer = rec.get("answer") or _last_boxed(rec.get("solution", ""))
        if answer is not None:
            row["answer"] = answer
    elif "input" in rec and "output" in rec:
        row["prompt"], row["completion"] = rec["input"], rec["output"]
    else:
        col = next((c for c in PROMPT_ONLY_COLUMNS if rec.get(c)), None)
        if col is None:
            raise ValueError(
                f"cannot map a record with columns {sorted(rec)} to a prompt: give prompt[/completion], messages, "
                "instruction/output (Alpaca), question/answer (GSM8K), problem/solution (MATH), input/output, or "
                f"one of {PROMPT_ONLY_COLUMNS}")
        row["prompt"] = rec[col]
    row["prompt"] = _as_messages(row["prompt"], system_prompt)
    if "completion" in row and isinstance(row["completion"], str):
        row["completion"] = [{"role": "assistant", "content": row["completion"]}]
    for k in ("answer", "kind", "topic"):
        if k not in row and rec.get(k) is not None:
            row[k] = rec[k]
    return row


def subset(rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """``n`` rows drawn without replacement with a fixed seed, in their original order (all if n <= 0 or n >= len)."""
    if n <= 0 or n >= len(rows):
        return rows
    keep = sorted(random.Random(seed).sample(range(len(rows)), n))
    return [rows[i] for i in keep]


def dataset_rows(spec: str, world=None, *, kind: Optional[str] = None, system_prompt: str = "",
                 max_rows: int = 0, need: tuple[str, ...] = ("prompt",), key: str = "dataset") -> list[dict]:
    """Normalized rows of ``spec``: at most ``max_rows`` (fixed-seed subset), ``kind`` filled where missing.

    ``need``: columns every row must have (e.g. ``("prompt", "completion")`` for SFT); a missing one
    is an error naming the config ``key``, the spec and the columns found.
    """
    raw = subset(load_rows(spec, world), max_rows)
    if not raw:
        raise ValueError(f"{key}={spec!r} holds no rows")
    rows = [normalize_record(r, system_prompt) for r in raw]
    if kind is not None:
        for r in rows:
            r.setdefault("kind", kind)
    for col in need:
        missing = sum(col not in r or r[col] is None for r in rows)
        if missing:
            raise ValueError(f"{key}={spec!r}: {missing} of {len(rows)} rows have no {col!r} after column mapping "
                             f"(columns of the first record: {sorted(raw[0])}); {col!r} is needed here")
    return rows
