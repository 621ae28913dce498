"""The run's device and precision, resolved once per process from the config, the hardware and the dist state.

``resolve_runtime(cfg, dist)`` (called by :func:`llm.run.run` at launch) decides, once:

  use_cpu   device=cpu, or device=auto without a GPU (device=cuda without a GPU is a ConfigError)
  bf16      the trainers' bf16: ``bf16: null`` = on a bf16-capable GPU only (TRL's default bf16=True would
            autocast on the CPU too); ``true`` needs a GPU (ConfigError on the CPU)
  dtype     base.dtype, with "auto" = "bfloat16" when bf16 is on, else "float32" (training, merges, judges,
            evaluation)
  device    this process's device for evaluation, judges and merges: the CPU, or its GPU under accelerate

and the :class:`Runtime` is passed down to the stages (llm.stages, llm.warmstart), which no longer
re-derive any of it. No fp16 mode exists: the trainers' fp16 stays TRL's default (off).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from llm.config import ConfigError, RunConfig
from llm.dist import Dist


@dataclass(frozen=True)
class Runtime:
    """Device and precision of this process's run (see the module docstring)."""

    use_cpu: bool
    bf16: bool
    dtype: str
    device: torch.device

    @property
    def torch_dtype(self) -> torch.dtype:
        """``dtype`` as a torch dtype (``torch.bfloat16`` for "bfloat16")."""
        return getattr(torch, self.dtype)


def _use_cpu(cfg: RunConfig) -> bool:
    if cfg.device == "cpu":
        return True
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch.cuda.is_available() is False; use device=auto or device=cpu "
                          "(a GPU recipe runs here only with --dry-run)")
    return not torch.cuda.is_available()


def _bf16(cfg: RunConfig, use_cpu: bool) -> bool:
    if cfg.bf16 is None:
        return (not use_cpu) and torch.cuda.is_bf16_supported()
    if cfg.bf16 and use_cpu:
        raise ConfigError("bf16=true but this run is on the CPU (TRL would autocast there); use bf16=null (auto) "
                          "or bf16=false, or run on a GPU")
    return cfg.bf16


def resolve_runtime(cfg: RunConfig, dist: Optional[Dist] = None) -> tuple[Runtime, Dist]:
    """The run's :class:`Runtime` and its :class:`~llm.dist.Dist` (``dist``, or a new one: gloo on the CPU,
    ``cfg.ddp_timeout``). A bad device or bf16 setting raises ConfigError before any process group exists."""
    use_cpu = _use_cpu(cfg)
    bf16 = _bf16(cfg, use_cpu)
    dtype = cfg.base.dtype if cfg.base.dtype != "auto" else ("bfloat16" if bf16 else "float32")
    dist = dist or Dist(cpu=use_cpu, timeout_s=cfg.ddp_timeout)
    device = torch.device("cpu") if use_cpu else torch.device(dist.device)
    return Runtime(use_cpu=use_cpu, bf16=bf16, dtype=dtype, device=device), dist
