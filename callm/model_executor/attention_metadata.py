"""Where each token of a flat batch sits in the paged KV cache.

The scheduler hands the model one flat batch mixing prefill chunks and decode tokens. Sequence
`s` owns tokens `query_start_loc[s]:query_start_loc[s+1]` of the batch: its newest `query_len`
tokens, which are the last positions of a context of `seq_lens[s]` tokens (cached + new).
Key/value vectors live in per-layer caches shaped `[num_blocks, block_size, num_kv_heads,
head_dim]`; a sequence's blocks, in order, are `block_tables[s, :ceil(seq_lens[s] / block_size)]`
and token `i` of the batch writes its key/value to flat slot `slot_mapping[i]`
(= block * block_size + offset).
"""

from dataclasses import dataclass
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

    @property
    def num_seqs(self) -> int:
        return self.seq_lens.shape[0]

    @property
    def query_lens(self) -> torch.Tensor:
        return self.query_start_loc[1:] - self.query_start_loc[:-1]

    @cached_property
    def plan(self) -> "BatchPlan":
        """The batch split once per step (not per layer) into single-token sequences, attended
        together, and longer chunks, attended one by one."""
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
        common, shortest = 0, 0
        if len(decode) > 1:
            tables = self.block_tables[seqs]
            common = int((tables == tables[:1]).all(0).int().cumprod(0).sum())
            shortest = int(self.seq_lens[seqs].min())
        return BatchPlan(seqs, tokens, prefills, common, shortest)


@dataclass
class BatchPlan:
    decode_seqs: torch.Tensor  # sequences with one query token this step
    decode_tokens: torch.Tensor  # their token index in the batch
    prefills: list[tuple[int, int, int, int]]  # (sequence, start, end, context length)
    decode_common_blocks: int = 0  # leading block-table entries all decode sequences share
    decode_shortest: int = 0  # shortest decode context

    def shared_decode_blocks(self, block_size: int) -> int:
        """Leading KV blocks every decode sequence reads (a shared system prompt, through the
        prefix cache), capped so each sequence keeps at least its newest token to itself."""
        return max(0, min(self.decode_common_blocks, (self.decode_shortest - 1) // block_size))
