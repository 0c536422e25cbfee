"""This process's place in the tensor-parallel group.

Layers ask for `tp_rank()`/`tp_size()` when built and call `all_reduce`/`all_gather` in forward;
with one rank (the default) those are no-ops, so the same model code runs alone or sharded.
`init_tensor_parallel` is called by multi-rank executors after `torch.distributed` is set up.
"""

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


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    if _size > 1:
        torch.distributed.all_reduce(x)
    return x


def all_gather_last_dim(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's slice of the last dimension, in rank order."""
    if _size == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(_size)]
    torch.distributed.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=-1)


def divide(numerator: int, denominator: int, what: str) -> int:
    if numerator % denominator:
        raise ValueError(f"{what} ({numerator}) is not divisible by the tensor-parallel size "
                         f"({denominator})")
    return numerator // denominator
