"""Linear layers split across tensor-parallel ranks.

Column-parallel layers split output features (each rank computes a slice, no communication);
row-parallel layers split input features and all-reduce the partial sums. A column-parallel
layer followed by a row-parallel one (QKV -> O, gate/up -> down) needs one all-reduce per pair.
Each parameter loads from the full checkpoint tensor and keeps only its rank's slice (a lazy
checkpoint tensor is read only where it is indexed, so a rank reads just its slices). A layer
may be given its rank's exact shard, which need not be an even split (attention heads go out in
whole key/value groups, see `head_partition`).
"""

import torch
from torch import nn

from callm.model_executor.parallel_state import (all_reduce, divide, head_partition, tp_rank,
                                                 tp_size)


def _even_shard(n: int, what: str) -> tuple[int, int]:
    size = divide(n, tp_size(), what)
    return tp_rank() * size, size


class ColumnParallelLinear(nn.Module):
    """Output features split across ranks; `output_sizes` lists the parts fused into one matrix
    (e.g. gate and up), each split on its own so a rank holds matching slices of every part.
    `shards` gives this rank's (start, size) in each full part; default: an even split.
    After loading, `quantized` may replace `weight` (layers/quantization.py)."""

    quantized = None

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool, dtype: torch.dtype,
                 shards: list[tuple[int, int]] | None = None):
        super().__init__()
        self.shards = shards or [_even_shard(n, "output features") for n in output_sizes]
        self.output_sizes = [size for _, size in self.shards]
        out = sum(self.output_sizes)
        self.weight = nn.Parameter(torch.empty(out, input_size, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out, dtype=dtype), requires_grad=False) if bias else None

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        """Copy this rank's slice of part `part` of the full (unsplit) checkpoint tensor."""
        start, size = self.shards[part]
        offset = sum(self.output_sizes[:part])
        param.data[offset:offset + size].copy_(full[start:start + size])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantized is not None:
            return self.quantized(x, self.bias)
        return nn.functional.linear(x, self.weight, self.bias)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q/k/v projection. Heads go to ranks in whole key/value groups (`head_partition`);
    when there are fewer key/value heads than ranks, each kv head is replicated on the ranks
    whose query heads use it. `q_head_start` is this rank's first query head."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int,
                 bias: bool, dtype: torch.dtype):
        q_start, self.num_heads, kv_start, self.num_kv_heads = head_partition(
            num_heads, num_kv_heads, tp_rank(), tp_size())
        self.q_head_start = q_start
        self.head_dim = head_dim
        kv = (kv_start * head_dim, self.num_kv_heads * head_dim)
        super().__init__(hidden_size, [num_heads * head_dim] + [num_kv_heads * head_dim] * 2,
                         bias, dtype, shards=[(q_start * head_dim, self.num_heads * head_dim),
                                              kv, kv])


class RowParallelLinear(nn.Module):
    """Input features split across ranks; partial outputs are summed with an all-reduce.
    `shard` is this rank's (start, size) of the input features; default: an even split."""

    quantized = None

    def __init__(self, input_size: int, output_size: int, bias: bool, dtype: torch.dtype,
                 shard: tuple[int, int] | None = None):
        super().__init__()
        self.input_start, self.input_size = shard or _even_shard(input_size, "input features")
        self.weight = nn.Parameter(torch.empty(output_size, self.input_size, dtype=dtype),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.empty(output_size, dtype=dtype),
                                 requires_grad=False) if bias else None

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        if param is self.bias:
            param.data.copy_(full[...])
            return
        start = self.input_start
        param.data.copy_(full[:, start:start + self.input_size])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = all_reduce(self.quantized(x) if self.quantized is not None
                       else nn.functional.linear(x, self.weight))
        return y + self.bias if self.bias is not None else y
