"""Several processes, one result: r3kit under `accelerate launch` or `torchrun` (one node, N processes).

World: this process's rank and the number of processes, read from the launcher's environment (RANK,
WORLD_SIZE); accelerate's PartialState (gloo on CPU, NCCL on GPUs) makes the process group the first time
ranks must talk. One process started any other way is rank 0 of 1, and nothing here imports accelerate.

Mining and evaluation split each `generate` call, not the data: every rank runs the same loop over the
same rows, and the generator plans the call exactly as one process would (transformers: prompts sorted by
length, cut into batches, one seed per batch; vLLM: one seed per request). Rank r generates its share of
that plan (batches b with b % N == r; a contiguous block of requests), and `gather_in_order` puts every
completion back in its place on every rank. Same plan, same seeds, same batch shapes: the same outputs as
one process, verified by every rank alike (verifying is cheap; generating is what is split).
Training splits the data: TRL's GRPOTrainer under accelerate gives each rank its share of each step's
problems (whole GRPO groups) and DDP averages the gradients (train.py).
Writes: only the main process writes the kit's records (r3kit.infra.io skips the write on other ranks);
`barrier` makes the others wait where they must read what the main process wrote.
"""

from __future__ import annotations

import os
from typing import Any


def world() -> tuple[int, int]:
    """(rank, number of processes) from the launcher's environment; (0, 1) for a plain process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={size}")
    return rank, size


def is_main() -> bool:
    return world()[0] == 0


def _state():
    import torch
    from accelerate import PartialState

    if torch.cuda.is_available():
        return PartialState()
    return PartialState(cpu=True, backend="gloo")  # accelerate makes a CPU process group only when asked (cpu=True)


def barrier() -> None:
    """Wait here until every rank arrives (nothing to do for one process)."""
    if world()[1] > 1:
        _state().wait_for_everyone()


def share(size: int, n: int, rank: int) -> range:
    """Rank `rank`'s contiguous block of n items split over `size` ranks (the first n % size get one more),
    as accelerate's split_between_processes splits a list."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def gather_in_order(part: dict[int, Any], n: int) -> list[Any]:
    """Every rank holds {index: item} for its share of n items; returns all n items in index order, on every
    rank. One process: `part` must already hold all n."""
    if world()[1] > 1:
        from accelerate.utils import gather_object

        _state()  # the process group must exist before gather_object
        merged: dict[int, Any] = {}
        for piece in gather_object([part]):
            merged.update(piece)
    else:
        merged = part
    if sorted(merged) != list(range(n)):
        missing = sorted(set(range(n)) - set(merged))[:5]
        raise RuntimeError(f"gathered {len(merged)} of {n} items (missing e.g. {missing}): the ranks planned different calls")
    return [merged[i] for i in range(n)]


_CPU_RANKS_READABLE = False


def load_cpu_rank_tensors() -> None:
    """Let torch.load read tensors of CPU process groups back. accelerate puts rank r of a CPU group on
    device "cpu:r", TRL/transformers save the optimizer there, and on resume transformers loads it with
    map_location="cpu:r", a location torch.load has no deserializer for (the CPU tests' resume failed so).
    Registers one, through torch's own extension point (torch.serialization.register_package); GPUs never
    need it."""
    global _CPU_RANKS_READABLE
    if _CPU_RANKS_READABLE:
        return
    import torch

    def tag(obj):
        return None  # saving is left as it is

    def restore(obj, location: str):
        return obj.cpu() if location.startswith("cpu:") else None

    torch.serialization.register_package(5, tag, restore)
    _CPU_RANKS_READABLE = True
