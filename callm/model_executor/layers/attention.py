"""Paged attention: one layer's queries over each sequence's cached context.

Backends share one call: store this step's keys/values at their cache slots, then attend every
query token causally over its sequence's context, read through the block table.
- `torch` (CPU default): decode tokens of all sequences in one padded batched call, prefill
  chunks one sequence at a time; float32 math over the cache dtype's values.
- `triton` (CUDA default): the kernels in `callm.model_executor.kernels.paged_attention`.
"""

from functools import cache

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention

from callm.model_executor.attention_metadata import AttentionMetadata


class TorchAttentionBackend:
    name = "torch"

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 key_cache: torch.Tensor, value_cache: torch.Tensor, meta: AttentionMetadata,
                 scale: float) -> torch.Tensor:
        num_kv_heads, head_dim = key_cache.shape[2], key_cache.shape[3]
        key_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, meta.slot_mapping,
                                                              k.to(key_cache.dtype))
        value_cache.view(-1, num_kv_heads, head_dim).index_copy_(0, meta.slot_mapping,
                                                                v.to(value_cache.dtype))
        out = torch.empty(q.shape, dtype=torch.float32)
        plan = meta.plan
        if plan.decode_seqs.numel():
            out[plan.decode_tokens] = self._decode(q[plan.decode_tokens].float(), key_cache,
                                                   value_cache, meta, plan.decode_seqs, scale)
        block_size = key_cache.shape[1]
        for s, start, end, context in plan.prefills:
            if context == end - start:  # no cached prefix: this chunk's own keys/values
                keys = k[start:end].to(key_cache.dtype)
                values = v[start:end].to(value_cache.dtype)
            else:
                blocks = meta.block_tables[s, :-(-context // block_size)]
                keys = key_cache[blocks].flatten(0, 1)[:context]
                values = value_cache[blocks].flatten(0, 1)[:context]
            out[start:end] = _attend(q[start:end].float(), keys.float(), values.float(), scale,
                                     context - (end - start))
        return out

    @staticmethod
    def _decode(q, key_cache, value_cache, meta, seqs, scale):
        """One query token per sequence: pad the contexts to the longest and mask the rest."""
        seq_lens = meta.seq_lens[seqs]
        block_size = key_cache.shape[1]
        num_blocks = -(-int(seq_lens.max()) // block_size)
        tables = meta.block_tables[seqs, :num_blocks]
        keys = key_cache[tables].flatten(1, 2).transpose(1, 2).float()  # [B, kv_heads, L, D]
        values = value_cache[tables].flatten(1, 2).transpose(1, 2).float()
        mask = torch.arange(keys.shape[2]) < seq_lens.unsqueeze(1)
        # The query heads sharing a kv head act as that head's rows of queries (2x faster than
        # SDPA's enable_gqa on CPU): [B, H, D] -> [B, kv_heads, group, D].
        grouped = q.unflatten(1, (keys.shape[1], -1))
        out = scaled_dot_product_attention(grouped, keys, values,
                                           attn_mask=mask[:, None, None, :], scale=scale)
        return out.flatten(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            prefix: int) -> torch.Tensor:
    """Causal attention of q [n, H, D] over k/v [prefix + n, KVH, D]."""
    q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if prefix == 0:
        out = scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=True)
    else:
        n = q.shape[1]
        mask = torch.arange(prefix + n) <= (torch.arange(n) + prefix).unsqueeze(1)
        out = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=True)
    return out.transpose(0, 1)


class TritonAttentionBackend:
    name = "triton"

    def __init__(self):
        from callm.model_executor.kernels import paged_attention

        self.kernels = paged_attention

    def __call__(self, q, k, v, key_cache, value_cache, meta, scale):
        self.kernels.write_kv_cache(k, v, key_cache, value_cache, meta.slot_mapping)
        return self.kernels.paged_attention(q, key_cache, value_cache, meta, scale)


BACKENDS = {"torch": TorchAttentionBackend, "triton": TritonAttentionBackend}


@cache
def get_attention_backend(name: str | None = None):
    """The named backend, or the default for this machine: triton on CUDA, torch otherwise."""
    if name is None:
        name = "triton" if torch.cuda.is_available() else "torch"
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; choose from {sorted(BACKENDS)}")
    return BACKENDS[name]()


class Attention(nn.Module):
    """Attention of one layer over its paged KV cache (`kv_cache` is set by the worker)."""

    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float,
                 backend: str | None = None):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = scale
        self.backend = get_attention_backend(backend)
        self.kv_cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                meta: AttentionMetadata) -> torch.Tensor:
        """q: [T, H, D], k/v: [T, KVH, D] -> [T, H * D] (float32)."""
        key_cache, value_cache = self.kv_cache
        out = self.backend(q, k, v, key_cache, value_cache, meta, self.scale)
        return out.flatten(1)
