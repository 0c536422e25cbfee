"""Paged attention: one layer's queries over each sequence's cached context.

Backends share one call: store this step's keys/values at their cache slots, then attend every
query token causally over its sequence's context, read through the block table.
- `torch` (CPU default): decode tokens of all sequences in one padded batched matmul, blocks
  they all share read once (cascade attention); prefill chunks one sequence at a time with
  SDPA; float32 math over the cache dtype's values.
- `triton` (CUDA default): the kernels in `callm.model_executor.kernels.paged_attention`.
"""

from functools import cache

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention

from callm.model_executor.attention_metadata import AttentionMetadata


class TorchAttentionBackend:
    """Caches are laid out [kv_heads, num_blocks, block_size, head_dim]: gathering the blocks of
    a batch's sequences along dim 1 gives, per kv head, each sequence's tokens as one contiguous
    run — the operand a batched matmul wants — with no strided copy."""

    name = "torch"

    @staticmethod
    def cache_shape(num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_kv_heads, num_blocks, block_size, head_dim)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 key_cache: torch.Tensor, value_cache: torch.Tensor, meta: AttentionMetadata,
                 scale: float) -> torch.Tensor:
        block_size = key_cache.shape[2]
        blocks, offsets = meta.slot_mapping // block_size, meta.slot_mapping % block_size
        key_cache[:, blocks, offsets] = k.to(key_cache.dtype).transpose(0, 1)
        value_cache[:, blocks, offsets] = v.to(value_cache.dtype).transpose(0, 1)
        out = torch.empty(q.shape, dtype=torch.float32)
        plan = meta.plan
        if plan.decode_seqs.numel():
            out[plan.decode_tokens] = self._decode(q[plan.decode_tokens].float(), key_cache,
                                                   value_cache, meta, plan.decode_seqs, scale)
        for s, start, end, context in plan.prefills:
            if context == end - start:  # no cached prefix: this chunk's own keys/values
                keys = k[start:end].to(key_cache.dtype).transpose(0, 1).float()
                values = v[start:end].to(value_cache.dtype).transpose(0, 1).float()
            else:
                tables = meta.block_tables[s:s + 1, :-(-context // block_size)]
                keys = _gather(key_cache, tables)[:, 0, :context].float()
                values = _gather(value_cache, tables)[:, 0, :context].float()
            out[start:end] = _attend(q[start:end].float(), keys, values, scale,
                                     context - (end - start))
        return out

    @staticmethod
    def _decode(q, key_cache, value_cache, meta, seqs, scale):
        """One query token per sequence. Blocks all of them share (a common system prompt) are
        read once for the whole batch — cascade attention — and only each sequence's own
        remainder is gathered, padded to the longest and masked; the two partial results merge
        by their log-sum-exps. The query heads sharing a kv head act as that head's rows of
        queries, so no key or value is repeated per query head. Math runs in the cache dtype
        with float32 accumulation (the CPU flash kernel), with no upcast copy of the context."""
        block_size = key_cache.shape[2]
        kv_heads, head_dim = key_cache.shape[0], key_cache.shape[3]
        batch = seqs.shape[0]
        shared_blocks = meta.plan.shared_decode_blocks(block_size)
        own_lens = meta.seq_lens[seqs] - shared_blocks * block_size
        tables = meta.block_tables[seqs, shared_blocks:shared_blocks - (-int(own_lens.max())
                                                                         // block_size)]
        keys, values = _gather(key_cache, tables), _gather(value_cache, tables)
        length = keys.shape[2]
        grouped = q.to(key_cache.dtype).view(batch, kv_heads, -1, head_dim).transpose(0, 1)
        group = grouped.shape[2]
        mask = torch.zeros(batch, length, dtype=key_cache.dtype)
        mask.masked_fill_(torch.arange(length) >= own_lens.unsqueeze(1), float("-inf"))
        out, lse = _flash(grouped.reshape(kv_heads * batch, 1, group, head_dim),
                          keys.view(kv_heads * batch, 1, length, head_dim),
                          values.view(kv_heads * batch, 1, length, head_dim),
                          mask.repeat(kv_heads, 1).view(kv_heads * batch, 1, 1, length), scale)
        out, lse = out.view(kv_heads, batch, group, head_dim).float(), lse.view(kv_heads, batch,
                                                                                group)
        if shared_blocks:
            table = meta.block_tables[seqs[:1], :shared_blocks]
            prefix_out, prefix_lse = _flash(
                grouped.reshape(kv_heads, 1, batch * group, head_dim),
                _gather(key_cache, table).view(kv_heads, 1, -1, head_dim),
                _gather(value_cache, table).view(kv_heads, 1, -1, head_dim), None, scale)
            prefix_lse = prefix_lse.view(kv_heads, batch, group)
            total = torch.logaddexp(lse, prefix_lse)
            out = (out * (lse - total).exp().unsqueeze(-1)
                   + prefix_out.view(kv_heads, batch, group, head_dim).float()
                   * (prefix_lse - total).exp().unsqueeze(-1))
        return out.transpose(0, 1).reshape(batch, -1, head_dim)


def _flash(q, k, v, mask, scale):
    """(output, log-sum-exp of the scores) of attention [batch, heads, len, head_dim]; the
    log-sum-exp is what merges partial results, and public SDPA does not return it."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=mask,
                                                                      scale=scale)


def _gather(cache: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """The blocks of each table row as [kv_heads, rows, blocks * block_size, head_dim]: one
    gather into contiguous runs."""
    rows, num_blocks = tables.shape
    kv_heads, _, block_size, head_dim = cache.shape
    picked = cache.index_select(1, tables.flatten())
    return picked.view(kv_heads, rows, num_blocks * block_size, head_dim)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
            prefix: int) -> torch.Tensor:
    """Causal attention of q [n, H, D] over k/v [kv_heads, prefix + n, D]."""
    q = q.transpose(0, 1)
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

    @staticmethod
    def cache_shape(num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_blocks, block_size, num_kv_heads, head_dim)

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
