"""Linear layers split across tensor-parallel ranks.

Column-parallel layers split output features (each rank computes a slice, no communication);
row-parallel layers split input features and all-reduce the partial sums. A column-parallel
layer followed by a row-parallel one (QKV -> O, gate/up -> down) needs one all-reduce per pair.
Each parameter loads from the full checkpoint tensor and keeps only its rank's slice.
"""

import torch
from torch import nn

from callm.model_executor.parallel_state import all_reduce, divide, tp_rank, tp_size


class ColumnParallelLinear(nn.Module):
    """Output features split across ranks; `output_sizes` lists the parts fused into one matrix
    (e.g. gate and up), each split on its own so a rank holds matching slices of every part."""

    def __init__(self, input_size: int, output_sizes: list[int], bias: bool, dtype: torch.dtype):
        super().__init__()
        self.output_sizes = [divide(n, tp_size(), "output features") for n in output_sizes]
        out = sum(self.output_sizes)
        self.weight = nn.Parameter(torch.empty(out, input_size, dtype=dtype), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out, dtype=dtype), requires_grad=False) if bias else None

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        """Copy this rank's slice of part `part` of the full (unsplit) checkpoint tensor."""
        size = self.output_sizes[part]
        offset = sum(self.output_sizes[:part])
        param.data[offset:offset + size].copy_(full[tp_rank() * size:(tp_rank() + 1) * size])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class QKVParallelLinear(ColumnParallelLinear):
    """Fused q/k/v projection. Query heads split across ranks; when there are fewer key/value
    heads than ranks, each kv head is replicated on the ranks whose query heads use it."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int,
                 bias: bool, dtype: torch.dtype):
        tp = tp_size()
        self.num_heads = divide(num_heads, tp, "number of attention heads")
        if num_kv_heads >= tp:
            self.num_kv_heads = divide(num_kv_heads, tp, "number of key/value heads")
            self.kv_replicas = 1
        else:
            self.kv_replicas = divide(tp, num_kv_heads, "tensor-parallel size over kv heads")
            self.num_kv_heads = 1
        self.head_dim = head_dim
        q, kv = self.num_heads * head_dim, self.num_kv_heads * head_dim
        super().__init__(hidden_size, [q * tp, kv * tp, kv * tp], bias, dtype)

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        if part == 0 or self.kv_replicas == 1:
            return super().load(param, full, part)
        size = self.output_sizes[part]
        offset = sum(self.output_sizes[:part])
        kv_head = tp_rank() // self.kv_replicas
        param.data[offset:offset + size].copy_(full[kv_head * size:(kv_head + 1) * size])


class RowParallelLinear(nn.Module):
    """Input features split across ranks; partial outputs are summed with an all-reduce."""

    def __init__(self, input_size: int, output_size: int, bias: bool, dtype: torch.dtype):
        super().__init__()
        self.input_size = divide(input_size, tp_size(), "input features")
        self.weight = nn.Parameter(torch.empty(output_size, self.input_size, dtype=dtype),
                                   requires_grad=False)
        self.bias = nn.Parameter(torch.empty(output_size, dtype=dtype),
                                 requires_grad=False) if bias else None

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        if param is self.bias:
            param.data.copy_(full)
            return
        start = tp_rank() * self.input_size
        param.data.copy_(full[:, start:start + self.input_size])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = all_reduce(nn.functional.linear(x, self.weight))
        return y + self.bias if self.bias is not None else y
