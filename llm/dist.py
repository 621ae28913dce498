"""The process group as the pipeline sees it: who writes, barriers, gather and broadcast of Python objects.

Under ``accelerate launch`` every process runs every stage (trainers and sharded evaluation need all
ranks); only the main process writes run files. Single-process runs (``python -m llm.run``) see a
group of one. Tests pass a stand-in ``state`` with ``is_main_process``, ``process_index``,
``num_processes``, ``device`` and ``wait_for_everyone``.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Optional


def process_group_timeout(timeout_s: float) -> timedelta:
    """``timeout_s`` seconds as the ``timedelta`` torch.distributed takes; ValueError unless finite and >= 1."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not (1 <= timeout_s < float("inf")):
        raise ValueError(f"timeout_s={timeout_s!r} must be a finite number of seconds >= 1 (the config's ddp_timeout, "
                         "e.g. 1800)")
    return timedelta(seconds=float(timeout_s))


class Dist:
    """Thin wrapper over ``accelerate.PartialState`` (created here unless ``state`` is given).

    ``cpu``: a CPU run. PartialState is a process-wide singleton and its first construction decides the
    backend: a CPU run launched with several processes (``torchrun --nproc_per_node 2 -m llm.run``) must
    create it with ``cpu=True`` (gloo, MULTI_CPU), as the trainers' ``use_cpu=True`` does later.
    ``timeout_s``: how long a collective may wait (the config's ``ddp_timeout``). It reaches
    ``torch.distributed.init_process_group(timeout=...)`` (and DeepSpeed's ``init_distributed``) only at
    the first construction, so the pipeline creates the group here, before any trainer (whose own
    ``ddp_timeout`` would come too late); None keeps torch's default (10 minutes for NCCL).
    """

    def __init__(self, state=None, *, cpu: bool = False, timeout_s: Optional[float] = None):
        if state is None:
            from accelerate import PartialState

            kwargs = {} if timeout_s is None else {"timeout": process_group_timeout(timeout_s)}
            state = PartialState(cpu=cpu, **kwargs)
        self.state = state

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    @property
    def rank(self) -> int:
        return int(self.state.process_index)

    @property
    def world_size(self) -> int:
        return int(self.state.num_processes)

    @property
    def device(self):
        return self.state.device

    @property
    def distributed_type(self) -> str:
        t = getattr(self.state, "distributed_type", "NO")
        return str(getattr(t, "value", t))

    def barrier(self) -> None:
        """Every process waits here until all arrive (no-op for one process)."""
        self.state.wait_for_everyone()

    def main_first(self):
        """Context manager: the main process runs the block first, then the others (e.g. hub downloads)."""
        return self.state.main_process_first()

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process (so that all take the same branch)."""
        if self.world_size == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def gather(self, obj: Any) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
        if self.world_size == 1:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def shard(self, items: list) -> list:
        """This process's share of ``items``: every world_size-th item from its rank."""
        return list(items[self.rank::self.world_size])
