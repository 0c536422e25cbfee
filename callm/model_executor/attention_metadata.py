"""Where each token of a flat batch sits in the paged KV cache.

The scheduler hands the model one flat batch mixing prefill chunks and decode tokens. Sequence
`s` owns tokens `query_start_loc[s]:query_start_loc[s+1]` of the batch: its newest `query_len`
tokens, which are the last positions of a context of `seq_lens[s]` tokens (cached + new).
Key/value vectors live in per-layer caches shaped `[num_blocks, block_size, num_kv_heads,
head_dim]`; a sequence's blocks, in order, are `block_tables[s, :ceil(seq_lens[s] / block_size)]`
and token `i` of the batch writes its key/value to flat slot `slot_mapping[i]`
(= block * block_size + offset).
"""

from dataclasses import dataclass, field
from functools import cached_property

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor  # [num_tokens] int64
    query_start_loc: torch.Tensor  # [num_seqs + 1] int32
    seq_lens: torch.Tensor  # [num_seqs] int32, context length after this step
    block_tables: torch.Tensor  # [num_seqs, max_blocks_per_seq] int32, unused entries 0
    max_query_len: int
    max_seq_len: int
    # what an attention backend derives from this metadata once per step rather than once per
    # layer (the same for all layers): keyed by the backend
    step_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_seqs(self) -> int:
        return self.seq_lens.shape[0]

    @property
    def query_lens(self) -> torch.Tensor:
        return self.query_start_loc[1:] - self.query_start_loc[:-1]

    @cached_property
    def plan(self) -> "BatchPlan":
        """The batch split once per step (not per layer) into single-token sequences, attended
        together, and longer chunks, attended one by one, plus the KV blocks all share."""
        starts = self.query_start_loc.tolist()
        contexts = self.seq_lens.tolist()
        decode, prefills = [], []
        for s, (start, end, context) in enumerate(zip(starts, starts[1:], contexts)):
            if end - start == 1:
                decode.append((s, start))
            elif end > start:
                prefills.append((s, start, end, context))
        seqs = torch.tensor([s for s, _ in decode], dtype=torch.long)
        tokens = torch.tensor([t for _, t in decode], dtype=torch.long)
        common, first_query = 0, 0
        if self.num_seqs > 1:
            tables = self.block_tables
            common = int((tables == tables[:1]).all(0).int().cumprod(0).sum())
            first_query = int((self.seq_lens - self.query_lens).min())
        return BatchPlan(seqs, tokens, prefills, common, first_query)


@dataclass
class BatchPlan:
    decode_seqs: torch.Tensor  # sequences with one query token this step
    decode_tokens: torch.Tensor  # their token index in the batch
    prefills: list[tuple[int, int, int, int]]  # (sequence, start, end, context length)
    common_blocks: int = 0  # leading block-table entries all sequences share
    first_query: int = 0  # earliest position any sequence queries this step

    def shared_blocks(self, block_size: int) -> int:
        """Leading KV blocks every sequence of the batch reads (a common system prompt, through
        the prefix cache) and that lie before all of this step's query tokens."""
        return min(self.common_blocks, self.first_query // block_size)
