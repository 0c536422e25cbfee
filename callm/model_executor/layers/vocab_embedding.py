"""Token embedding and LM head split over the vocabulary across tensor-parallel ranks."""

import torch
from torch import nn

from callm.model_executor.parallel_state import all_gather_last_dim, all_reduce, tp_rank, tp_size


class VocabParallelEmbedding(nn.Module):
    """Each rank holds a contiguous slice of the (padded) vocabulary; tokens outside it embed
    to zero there, and the all-reduce assembles the full embedding. After loading, `quantized`
    may replace `weight` (layers/quantization.py)."""

    quantized = None

    def __init__(self, vocab_size: int, hidden_size: int, dtype: torch.dtype):
        super().__init__()
        self.vocab_size = vocab_size
        self.shard_size = -(-vocab_size // tp_size())
        self.start = tp_rank() * self.shard_size
        self.weight = nn.Parameter(torch.zeros(self.shard_size, hidden_size, dtype=dtype),
                                   requires_grad=False)

    def load(self, param: nn.Parameter, full: torch.Tensor, part: int = 0) -> None:
        rows = full[self.start:self.start + self.shard_size]
        param.data[:rows.shape[0]].copy_(rows)

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        if self.quantized is not None:
            return self.quantized.weight.rows(index)
        return nn.functional.embedding(index, self.weight)

    def forward(self, token_ids: torch.Tensor) -> torch.Tensor:
        if tp_size() == 1:
            return self._rows(token_ids)
        local = token_ids - self.start
        outside = (local < 0) | (local >= self.shard_size)
        x = self._rows(local.masked_fill(outside, 0))
        return all_reduce(x.masked_fill(outside.unsqueeze(-1), 0))


class ParallelLMHead(VocabParallelEmbedding):
    """Logits for each rank's vocabulary slice, gathered to the full vocabulary."""

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = all_gather_last_dim(self.quantized(hidden) if self.quantized is not None
                                     else nn.functional.linear(hidden, self.weight))
        return logits[..., :self.vocab_size]
