"""The FRPO paper's standard evaluations of a saved model (Table 2): MATH500 through lm-eval-harness, MBPP+ through evalplus.

* MATH500: lm-eval-harness's ``minerva_math500`` task (the 500 MATH test problems of Lightman et al.), the
  model's chat template and the Qwen-Math boxed system prompt, greedy, scored by the task's own
  ``math_verify`` (and ``exact_match``) metrics; vLLM generation when vLLM and a GPU are there, else HF.
* MBPP+: evalplus (Liu et al. 2023): the model writes a solution per task from evalplus's instruction prompt
  (greedy, chat template), evalplus's ``sanitize`` extracts the code, and ``python -m evalplus.evaluate``
  runs it in its own sandbox in a separate process (never in this one); pass@1 on the base and the plus
  tests.

Both read a local data file when the hub is unreachable: the MATH-500 test split as JSON lines with
``problem`` / ``solution`` (``answer`` optional) and evalplus's ``MbppPlus.jsonl``. Command line::

    python -m llm.standard_evals --model runs/x/seed0/frpo_l2/align/model --task math500 --data math500.jsonl
    python -m llm.standard_evals --model <path> --task mbpp_plus --data MbppPlus.jsonl --limit 50

Functions for the pipeline: :func:`math500`, :func:`mbpp_plus`, :func:`run_benchmarks` (``eval.benchmarks``).
Optional dependencies: ``pip install -e ".[evals]"`` (lm-eval, evalplus).
Deviation: the paper does not state its few-shot setting; the default here is zero-shot with the chat
template and the boxed system prompt (the Qwen-Math convention), ``num_fewshot`` changes it.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

BOXED_SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
TASKS = ("math500", "mbpp_plus")
# evalplus's own instruction and response prefixes (evalplus.codegen, the non-"perf" prompt)
MBPP_INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem in a markdown "
                    "code block:")
MBPP_RESPONSE = ("Below is a Python script with a self-contained function that solves the problem and passes "
                 "corresponding tests:")


def _need(module: str, extra: str = "evals") -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{module} is not installed; `pip install -e \".[{extra}]\"` (lm-eval, evalplus)")


def _check_path(path: Optional[str], what: str, hub_ok: bool = False) -> None:
    """A local path must exist; with ``hub_ok`` a hub id ('org/name', no local prefix) passes."""
    if path is None or Path(path).expanduser().exists():
        return
    if hub_ok and not path.startswith(("/", ".", "~")) and path.count("/") == 1:
        return
    raise ValueError(f"{what}={path!r} does not exist; give an existing local path"
                     + (" or a hub id" if hub_ok else " (or omit it to use the hub)"))


def _backend(backend: str) -> str:
    if backend not in ("auto", "hf", "vllm"):
        raise ValueError(f"backend={backend!r} must be auto | hf | vllm")
    if backend != "auto":
        return backend
    import torch

    return "vllm" if importlib.util.find_spec("vllm") is not None and torch.cuda.is_available() else "hf"


# ---------------------------------------------------------------------------------------------- MATH500
def _math500_task(data: Optional[str], num_fewshot: int, workdir: Path) -> tuple[str, Optional[str]]:
    """(task name, include path): the bundled minerva_math500, or the same task on a local JSON-lines file."""
    if data is None and num_fewshot == 4:
        return "minerva_math500", None
    import lm_eval

    bundled = Path(lm_eval.__file__).parent / "tasks" / "minerva_math" / "minerva_math500.yaml"
    lines = [f"include: {bundled}", "task: frtk_math500", f"num_fewshot: {num_fewshot}"]
    if data is not None:
        lines += ["dataset_path: json", "dataset_name: null",
                  f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(Path(data).expanduser().resolve()))}"]
    (workdir / "frtk_math500.yaml").write_text("\n".join(lines) + "\n")
    return "frtk_math500", str(workdir)


def math500(model: str, *, data: Optional[str] = None, limit: Optional[int] = None, num_fewshot: int = 0,
            max_gen_toks: int = 3000, batch_size: int = 8, backend: str = "auto", dtype: str = "auto",
            device: Optional[str] = None, system_prompt: str = BOXED_SYSTEM_PROMPT,
            samples_out: Optional[str] = None) -> dict[str, float]:
    """MATH500 accuracy of the saved model at ``model`` through lm-eval-harness ``minerva_math500``.

    Returns ``{"math500/math_verify", "math500/exact_match", "math500/n"}`` (accuracies in [0, 1]).
    ``data``: a local JSON-lines copy of HuggingFaceH4/MATH-500 (else the hub); ``limit``: the first problems
    only; ``max_gen_toks``: generation length (the recipes' 3000); ``samples_out``: write every rendered prompt
    and response there (JSON).
    """
    _check_path(model, "model", hub_ok=True)  # bad paths first: a clear error even without the extra installed
    _check_path(data, "data")
    _need("lm_eval")
    if num_fewshot < 0 or max_gen_toks < 1 or batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"num_fewshot={num_fewshot} >= 0, max_gen_toks={max_gen_toks}, batch_size={batch_size} and "
                         f"limit={limit} >= 1 are required")
    import lm_eval
    from lm_eval.tasks import TaskManager

    kind = _backend(backend)
    args: dict[str, Any] = {"pretrained": str(model), "dtype": dtype}
    if kind == "hf":
        args["device"] = device or ("cuda" if _cuda() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        task, include = _math500_task(data, num_fewshot, Path(tmp))
        out = lm_eval.simple_evaluate(
            model=kind, model_args=args, tasks=[task], task_manager=TaskManager(include_path=include),
            apply_chat_template=True, fewshot_as_multiturn=num_fewshot > 0, system_instruction=system_prompt or None,
            limit=limit, gen_kwargs={"max_gen_toks": max_gen_toks}, batch_size=batch_size,
            log_samples=samples_out is not None)
    res = out["results"][task]
    if samples_out is not None:
        rows = [{"prompt": _context(x["arguments"]), "response": x["resps"][0][0] if x["resps"] else "",
                 "doc": x.get("doc")} for x in out["samples"][task]]
        Path(samples_out).write_text(json.dumps(rows, indent=1, default=str))
    n = out.get("n-samples", {}).get(task, {}).get("effective")
    return {"math500/math_verify": float(res["math_verify,none"]), "math500/exact_match": float(res["exact_match,none"]),
            "math500/n": float(n) if n is not None else float("nan")}


def _context(arguments) -> str:
    """The rendered prompt of an lm-eval sample (``arguments``: a dict of arg dicts, or a list of tuples)."""
    if isinstance(arguments, dict):
        first = next(iter(arguments.values()))
        return first["arg_0"] if isinstance(first, dict) else first[0]
    return arguments[0][0]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- MBPP+
def _read_jsonl(path: str) -> list[dict]:
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(Path(path).expanduser(), "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def mbpp_plus_problems(data: Optional[str] = None, limit: Optional[int] = None) -> list[dict]:
    """The MBPP+ tasks: evalplus's MbppPlus.jsonl(.gz) at ``data``, else evalplus's own copy (downloads once)."""
    _check_path(data, "data")
    if data is not None:  # a local file needs no evalplus to read
        rows = _read_jsonl(data)
    else:
        _need("evalplus")
        from evalplus.data import get_mbpp_plus

        rows = list(get_mbpp_plus().values())
    missing = [k for k in ("task_id", "prompt", "entry_point") if rows and k not in rows[0]]
    if missing:
        raise ValueError(f"{data}: MBPP+ rows need {missing}; give evalplus's MbppPlus.jsonl")
    return rows[:limit] if limit else rows


def evaluate_solutions(problems: list[dict], solutions: dict[str, str], workdir: str | Path,
                       parallel: int = 1, timeout_s: int = 1800) -> dict[str, float]:
    """pass@1 of ``solutions`` (task_id → code) by ``python -m evalplus.evaluate`` in a separate process.

    The problems are written to ``workdir`` and handed to evalplus through ``MBPP_OVERRIDE_PATH``, its
    ground-truth cache goes to ``workdir`` too; the candidate code runs only inside evalplus's sandboxed
    workers of that process. Returns ``{"mbpp_plus/pass@1", "mbpp/pass@1", "mbpp_plus/n"}`` (plus = base + extra
    tests, as evalplus reports MBPP+).
    """
    _need("evalplus")
    work = Path(workdir).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    probs = work / "MbppPlus.jsonl"
    probs.write_text("".join(json.dumps({k: v for k, v in p.items()}) + "\n" for p in problems))
    samples = work / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": p["task_id"], "solution": solutions.get(p["task_id"], "")})
                               + "\n" for p in problems))
    result = work / "samples_eval_results.json"
    if result.exists():
        result.unlink()
    env = {**os.environ, "MBPP_OVERRIDE_PATH": str(probs), "XDG_CACHE_HOME": str(work / "cache"),
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "evalplus.evaluate", "--dataset", "mbpp", "--samples", str(samples),
                           "--parallel", str(parallel), "--i_just_wanna_run"], env=env, capture_output=True,
                          text=True, timeout=timeout_s, cwd=str(work))
    if proc.returncode != 0 or not result.exists():
        raise RuntimeError(f"evalplus.evaluate failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    evals = json.loads(result.read_text())["eval"]
    base = [all(r["base_status"] == "pass" for r in rs) for rs in evals.values()]
    plus = [all(r["base_status"] == "pass" and r["plus_status"] == "pass" for r in rs) for rs in evals.values()]
    n = len(evals)
    return {"mbpp_plus/pass@1": sum(plus) / n, "mbpp/pass@1": sum(base) / n, "mbpp_plus/n": float(n)}


def _generate(model_path: str, prompts: list[str], *, max_new_tokens: int, batch_size: int, device: Optional[str],
              dtype: Optional[str]) -> list[str]:
    """Greedy completions of already-rendered prompts (vLLM when available on a GPU, else HF generate)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if _backend("auto") == "vllm":  # pragma: no cover - GPU only
        from vllm import LLM, SamplingParams

        llm = LLM(model=model_path, dtype=dtype or "auto")
        outs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_new_tokens))
        return [o.outputs[0].text for o in outs]
    local = Path(model_path).exists()
    tok = AutoTokenizer.from_pretrained(model_path, local_files_only=local)
    tok.pad_token = tok.pad_token or tok.eos_token
    kw = {"dtype": getattr(torch, dtype)} if dtype and dtype != "auto" else {}
    model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=local, **kw)
    model.to(device or ("cuda" if _cuda() else "cpu")).eval()
    out = []
    for s in range(0, len(prompts), batch_size):
        enc = tok(prompts[s: s + batch_size], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False).to(model.device)
        with torch.no_grad():
            seq = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        out += tok.batch_decode(seq[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return out


def mbpp_plus(model: str, *, data: Optional[str] = None, limit: Optional[int] = None, max_new_tokens: int = 768,
              batch_size: int = 8, device: Optional[str] = None, dtype: Optional[str] = None,
              workdir: Optional[str] = None, parallel: int = 1) -> dict[str, float]:
    """MBPP+ pass@1 of the saved model at ``model``: evalplus prompt + chat template, greedy, evalplus sandbox."""
    _check_path(model, "model", hub_ok=True)
    _check_path(data, "data")
    _need("evalplus")
    from evalplus.provider.utility import make_raw_chat_prompt
    from evalplus.sanitize import sanitize
    from transformers import AutoTokenizer

    problems = mbpp_plus_problems(data, limit)
    tok = AutoTokenizer.from_pretrained(model, local_files_only=Path(model).exists())
    prompts = [make_raw_chat_prompt(p["prompt"], MBPP_INSTRUCTION, MBPP_RESPONSE, tok) for p in problems]
    texts = _generate(model, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, device=device,
                      dtype=dtype)
    solutions = {p["task_id"]: sanitize(t, p["entry_point"]) for p, t in zip(problems, texts, strict=True)}
    with tempfile.TemporaryDirectory() as tmp:
        return evaluate_solutions(problems, solutions, workdir or tmp, parallel=parallel)


# ---------------------------------------------------------------------------------------------- pipeline + CLI
def parse_benchmark(spec: str) -> tuple[str, Optional[str]]:
    """``"math500"`` / ``"mbpp_plus:/data/MbppPlus.jsonl"`` → (task, local data file or None)."""
    task, _, data = spec.partition(":")
    if task not in TASKS:
        raise ValueError(f"benchmark {spec!r}: task must be one of {TASKS}, optionally ':<local data file>'")
    return task, (data or None)


def run_benchmarks(cfg, model_path: str) -> dict[str, float]:
    """``eval.benchmarks`` of a run config on a saved model (main process; empty list: nothing)."""
    out: dict[str, float] = {}
    e = cfg.eval
    for spec in e.benchmarks:
        task, data = parse_benchmark(spec)
        if task == "math500":
            out.update(math500(model_path, data=data, max_gen_toks=e.max_new_tokens, batch_size=e.batch_size,
                               limit=e.max_prompts, system_prompt=e.system_prompt or BOXED_SYSTEM_PROMPT))
        else:
            out.update(mbpp_plus(model_path, data=data, max_new_tokens=e.max_new_tokens, batch_size=e.batch_size,
                                 limit=e.max_prompts))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llm.standard_evals", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="a saved model directory (or hub id)")
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--data", default=None, help="local data file (MATH-500 JSON lines / MbppPlus.jsonl); default: hub")
    p.add_argument("--limit", type=int, default=None, help="the first N problems only")
    p.add_argument("--max-new-tokens", type=int, default=None, help="generation length (3000 MATH500, 768 MBPP+)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-fewshot", type=int, default=0, help="MATH500 only (default 0, with the boxed system prompt)")
    p.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = p.parse_args(argv)
    try:
        if args.task == "math500":
            res = math500(args.model, data=args.data, limit=args.limit, num_fewshot=args.num_fewshot,
                          max_gen_toks=args.max_new_tokens or 3000, batch_size=args.batch_size)
        else:
            res = mbpp_plus(args.model, data=args.data, limit=args.limit, max_new_tokens=args.max_new_tokens or 768,
                            batch_size=args.batch_size)
    except (ValueError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
