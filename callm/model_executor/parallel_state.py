"""This process's place in the tensor-parallel group.

Layers ask for `tp_rank()`/`tp_size()` when built and call `all_reduce`/`all_gather` in forward;
with one rank (the default) those are no-ops, so the same model code runs alone or sharded.
`init_distributed` (called by each rank of a multi-rank executor) sets up `torch.distributed`
(gloo on CPU, NCCL on CUDA) and this module's rank and size.

Attention heads are split by whole key/value groups (`head_partition`), so a rank's query heads
always share its key/value heads; collective calls can be timed (`comm_timing`) for benchmarks.
"""

import time
from datetime import timedelta

import torch

_rank = 0
_size = 1


def init_tensor_parallel(rank: int, size: int) -> None:
    global _rank, _size
    _rank, _size = rank, size


def tp_rank() -> int:
    return _rank


def tp_size() -> int:
    return _size


def init_distributed(rank: int, size: int, init_method: str, backend: str = "gloo",
                     timeout_s: float = 300.0) -> None:
    """Join the process group of `size` ranks (rendezvous at `init_method`, e.g.
    "tcp://10.0.0.1:29500") and make this process tensor-parallel rank `rank`.

    `timeout_s` bounds how long a collective waits for a peer that stopped answering; a peer
    whose process dies is noticed at once (its connections close)."""
    if size > 1:
        torch.distributed.init_process_group(backend, init_method=init_method, rank=rank,
                                             world_size=size, timeout=timedelta(seconds=timeout_s))
    init_tensor_parallel(rank, size)


def destroy_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    init_tensor_parallel(0, 1)


# Seconds spent in collectives, and how many, while timing is on (benchmarks only).
_timing = False
comm_stats = {"all_reduce_s": 0.0, "all_reduce_calls": 0, "all_gather_s": 0.0,
              "all_gather_calls": 0}


def comm_timing(enabled: bool) -> None:
    global _timing
    _timing = enabled
    for key in comm_stats:
        comm_stats[key] = 0 if key.endswith("calls") else 0.0


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _size > 1:
        if _timing:
            start = time.perf_counter()
            torch.distributed.all_reduce(x)
            comm_stats["all_reduce_s"] += time.perf_counter() - start
            comm_stats["all_reduce_calls"] += 1
        else:
            torch.distributed.all_reduce(x)
    return x


def all_gather_last_dim(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's slice of the last dimension, in rank order."""
    if _size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_size)]
    start = time.perf_counter() if _timing else 0.0
    torch.distributed.all_gather(parts, x.contiguous())
    if _timing:
        comm_stats["all_gather_s"] += time.perf_counter() - start
        comm_stats["all_gather_calls"] += 1
    return torch.cat(parts, dim=-1)


def divide(numerator: int, denominator: int, what: str) -> int:
    if numerator % denominator:
        raise ValueError(f"{what} ({numerator}) is not divisible by the tensor-parallel size "
                         f"({denominator})")
    return numerator // denominator


def head_partition(num_heads: int, num_kv_heads: int, rank: int,
                   size: int) -> tuple[int, int, int, int]:
    """This rank's attention heads: (first query head, query heads, first kv head, kv heads).

    Heads are dealt out in whole key/value groups (a kv head with the query heads that read it),
    so each rank's attention is ordinary GQA over its own heads:
    - at least as many kv heads as ranks: each rank gets a contiguous run of groups; when they do
      not divide evenly the first ranks get one group more (SmolLM2's 3 groups of 3 query heads
      over 2 ranks: 6 + 3 heads);
    - fewer kv heads than ranks: each kv head is replicated on `size // num_kv_heads` ranks,
      which split its group's query heads; the counts must divide, else a ValueError.
    """
    if num_kv_heads < 1 or num_heads % num_kv_heads:
        raise ValueError(f"{num_heads} attention heads cannot be shared by {num_kv_heads} "
                         "key/value heads")
    group = num_heads // num_kv_heads
    if num_kv_heads >= size:
        base, extra = divmod(num_kv_heads, size)
        kv_count = base + (rank < extra)
        kv_start = rank * base + min(rank, extra)
        return kv_start * group, kv_count * group, kv_start, kv_count
    if not _kv_replicable(group, num_kv_heads, size):
        valid = [n for n in range(1, num_heads + 1)
                 if n <= num_kv_heads or _kv_replicable(group, num_kv_heads, n)]
        raise ValueError(
            f"cannot split {num_heads} attention heads ({num_kv_heads} key/value heads) over "
            f"{size} tensor-parallel ranks: with fewer key/value heads than ranks, each is "
            f"replicated, so the number of ranks must be a multiple of {num_kv_heads} and each "
            f"key/value head's {group} query heads must divide over its replicas; "
            f"tensor-parallel sizes these heads allow: {', '.join(map(str, valid))}")
    replicas = size // num_kv_heads
    q_count = group // replicas
    return rank * q_count, q_count, rank // replicas, 1


def _kv_replicable(group: int, num_kv_heads: int, size: int) -> bool:
    return size % num_kv_heads == 0 and group % (size // num_kv_heads) == 0
