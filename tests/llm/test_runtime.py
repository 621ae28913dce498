"""llm.runtime: the device / bf16 / dtype decision, made once by llm.run and read by the stages."""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import llm.runtime as R
import llm.stages as S
import llm.trainkit as K
from llm.config import ConfigError, load_config
from llm.dist import Dist
from llm.run import run
from llm.runtime import Runtime, resolve_runtime


def _fake_dist(device="cpu"):
    state = SimpleNamespace(is_main_process=True, process_index=0, num_processes=1, device=torch.device(device),
                            distributed_type="NO", wait_for_everyone=lambda: None,
                            main_process_first=nullcontext)
    return Dist(state)


def test_cpu_config_gives_cpu_float32_no_bf16():
    dist = _fake_dist()
    rt, same = resolve_runtime(load_config("default", ["device=cpu"]), dist)
    assert same is dist
    assert rt == Runtime(use_cpu=True, bf16=False, dtype="float32", device=torch.device("cpu"))
    assert rt.torch_dtype is torch.float32
    with pytest.raises(AttributeError):  # frozen: decided once
        rt.bf16 = True


def test_explicit_base_dtype_is_kept():
    rt, _ = resolve_runtime(load_config("default", ["device=cpu", "base.dtype=bfloat16"]), _fake_dist())
    assert (rt.dtype, rt.torch_dtype, rt.bf16) == ("bfloat16", torch.bfloat16, False)


def test_gpu_branch_takes_the_process_device(monkeypatch):
    """device=auto on a (faked) bf16 GPU: bf16 on, dtype auto -> bfloat16, the device is the Dist's."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    rt, _ = resolve_runtime(load_config("default", []), _fake_dist("cuda:3"))
    assert rt == Runtime(use_cpu=False, bf16=True, dtype="bfloat16", device=torch.device("cuda:3"))
    rt, _ = resolve_runtime(load_config("default", ["bf16=false"]), _fake_dist("cuda:3"))
    assert (rt.bf16, rt.dtype) == (False, "float32")


def test_bad_device_and_bf16_settings_give_the_config_errors(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"device='cuda' but torch.cuda.is_available\(\) is False"):
        resolve_runtime(load_config("default", ["device=cuda"]), _fake_dist())
    with pytest.raises(ConfigError, match="bf16=true but this run is on the CPU"):
        resolve_runtime(load_config("default", ["device=cpu", "bf16=true"]), _fake_dist())


def test_trainer_args_read_the_runtime_not_the_config(tmp_path):
    """trainer_args maps the Runtime it is given (here bf16 on, bfloat16, although the config says cpu / auto)."""
    cfg = load_config("default", ["device=cpu"])
    rt = Runtime(use_cpu=True, bf16=True, dtype="bfloat16", device=torch.device("cpu"))
    args = K.trainer_args(cfg, rt, tmp_path, 0, steps=2, epochs=1.0, learning_rate=1e-3, warmup_ratio=0.0,
                          grad_accum=1, grad_ckpt=False, save_every=None)
    assert (args["use_cpu"], args["bf16"], args["model_init_kwargs"]) == (True, True, {"dtype": "bfloat16"})


class _Stop(Exception):
    pass


def test_run_resolves_once_and_passes_it_to_the_stages(tmp_path, monkeypatch):
    calls = []
    real = R._use_cpu
    monkeypatch.setattr(R, "_use_cpu", lambda cfg: calls.append(1) or real(cfg))
    seen = {}

    def stage_base(cfg, world, seed, out, dist, rt):
        seen["rt"] = rt
        raise _Stop

    monkeypatch.setattr(S, "stage_base", stage_base)
    cfg = load_config("default", [f"output_dir={tmp_path}", "run_name=rt", "device=cpu", "seeds=[0]"])
    with pytest.raises(_Stop):
        run(cfg, dist=_fake_dist())
    assert len(calls) == 1
    assert seen["rt"] == Runtime(use_cpu=True, bf16=False, dtype="float32", device=torch.device("cpu"))
    assert Path(tmp_path / "rt" / "config.yaml").exists()
