"""Paged attention: one layer's queries over each sequence's cached context.

Backends share one call: store this step's keys/values at their cache slots, then attend every
query token causally over its sequence's context, read through the block table.
- `torch` (CPU default): cascade attention. KV blocks every sequence of the batch shares (a
  system prompt with tool definitions, through the prefix cache) are attended once by all query
  tokens together; each sequence's own remainder separately — decode tokens in one padded batch,
  prefill chunks one by one — and the partial results merge by their log-sum-exps. Math runs in
  the cache dtype with float32 accumulation (PyTorch's CPU flash kernel), never upcasting a copy
  of the context.
- `triton` (CUDA default): the kernels in `callm.model_executor.kernels.paged_attention`.
"""

from dataclasses import dataclass
from functools import cache

import torch
from torch import nn

from callm.model_executor.attention_metadata import AttentionMetadata


class TorchAttentionBackend:
    """Caches are laid out [kv_heads, num_blocks, block_size, head_dim]: gathering the blocks of
    a batch's sequences along dim 1 gives, per kv head, each sequence's tokens as one contiguous
    run, with no strided copy. The query heads sharing a kv head act as that head's rows of
    queries, so no key or value is repeated per query head."""

    name = "torch"

    @staticmethod
    def cache_shape(num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_kv_heads, num_blocks, block_size, head_dim)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                 key_cache: torch.Tensor, value_cache: torch.Tensor, meta: AttentionMetadata,
                 scale: float) -> torch.Tensor:
        kv_heads, _, block_size, head_dim = key_cache.shape
        step = _step_inputs(meta, block_size, kv_heads, key_cache.dtype)
        dtype = key_cache.dtype  # (no-op casts skipped: each costs a dispatch per layer)
        k = k if k.dtype == dtype else k.to(dtype)
        v = v if v.dtype == dtype else v.to(dtype)
        key_cache[:, step.blocks, step.offsets] = k.transpose(0, 1)
        value_cache[:, step.blocks, step.offsets] = v.transpose(0, 1)
        q = (q if q.dtype == dtype else q.to(dtype)).view(q.shape[0], kv_heads, -1, head_dim)
        plan = meta.plan
        shared_blocks = step.shared_blocks
        shared = shared_blocks * block_size
        if step.all_decode:  # a batch of decodes only: no scatter into the batch
            out, lse = _attend_decodes(q, key_cache, value_cache, step.decode_tables,
                                       step.decode_mask, scale)
        else:
            out = torch.empty(q.shape, dtype=torch.float32)
            lse = torch.empty(q.shape[:3], dtype=torch.float32)
        if step.decode_tables is not None and not step.all_decode:
            tokens = plan.decode_tokens
            decoded, lse[tokens] = _attend_decodes(
                q[tokens], key_cache, value_cache, step.decode_tables, step.decode_mask, scale)
            out[tokens] = decoded.float()
        for s, start, end, context in plan.prefills:
            if context - shared == end - start:  # its own context is just this chunk
                keys, values = k[start:end].transpose(0, 1), v[start:end].transpose(0, 1)
            else:
                tables = meta.block_tables[s:s + 1, shared_blocks:-(-context // block_size)]
                keys = _gather(key_cache, tables)[:, 0, :context - shared]
                values = _gather(value_cache, tables)[:, 0, :context - shared]
            out[start:end], lse[start:end] = _attend_chunk(q[start:end], keys, values, scale)
        if shared_blocks:
            table = meta.block_tables[:1, :shared_blocks]
            out = _add_shared_prefix(q, out, lse, _gather(key_cache, table)[:, 0],
                                     _gather(value_cache, table)[:, 0], scale)
        return out.reshape(q.shape[0], -1, head_dim)


def _flash(q, k, v, mask, scale):
    """(output in the cache dtype, float32 log-sum-exp of the scores) of attention over
    [batch, heads, len, head_dim]; the log-sum-exp is what merges partial results, and public
    SDPA does not return it. Every query row must see at least one key."""
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        q, k, v, attn_mask=mask, scale=scale)


def _gather(cache: torch.Tensor, tables: torch.Tensor) -> torch.Tensor:
    """The blocks of each table row as [kv_heads, rows, blocks * block_size, head_dim]."""
    rows, num_blocks = tables.shape
    kv_heads, _, block_size, head_dim = cache.shape
    picked = cache.index_select(1, tables.flatten())
    return picked.view(kv_heads, rows, num_blocks * block_size, head_dim)


@dataclass
class _StepInputs:
    """Per-step (not per-layer) inputs of the torch backend, built by the first layer."""

    blocks: torch.Tensor  # KV block of each new token
    offsets: torch.Tensor  # its offset in the block
    shared_blocks: int
    decode_tables: torch.Tensor | None  # [B, blocks] after the shared prefix, trimmed
    decode_mask: torch.Tensor | None  # [kvh * B, 1, 1, length] additive
    all_decode: bool  # every token of the batch is a decode, in order


def _step_inputs(meta: AttentionMetadata, block_size: int, kv_heads: int,
                 dtype: torch.dtype) -> _StepInputs:
    key = ("torch", block_size, kv_heads, dtype)
    step = meta.step_cache.get(key)
    if step is not None:
        return step
    plan = meta.plan
    shared_blocks = plan.shared_blocks(block_size)
    tables = mask = None
    batch = plan.decode_seqs.numel()
    if batch:
        seqs = plan.decode_seqs
        lens = meta.seq_lens[seqs] - shared_blocks * block_size
        tables = meta.block_tables[seqs, shared_blocks:]
        tables = tables[:, :-(-int(lens.max()) // block_size)]
        length = tables.shape[1] * block_size
        mask = torch.zeros(batch, length, dtype=dtype)
        mask.masked_fill_(torch.arange(length) >= lens.unsqueeze(1), float("-inf"))
        mask = mask.repeat(kv_heads, 1).view(kv_heads * batch, 1, 1, length)
    step = _StepInputs(meta.slot_mapping // block_size, meta.slot_mapping % block_size,
                       shared_blocks, tables, mask,
                       batch == meta.slot_mapping.numel() and not plan.prefills)
    meta.step_cache[key] = step
    return step


def _attend_decodes(q, key_cache, value_cache, tables, mask, scale):
    """One query token per sequence, q [B, kvh, group, D], over the blocks in `tables`, padded
    to the longest and masked by `mask` (`_step_inputs`). -> out [B, kvh, group, D], lse."""
    batch, kv_heads, group, head_dim = q.shape
    keys, values = _gather(key_cache, tables), _gather(value_cache, tables)
    length = keys.shape[2]
    out, lse = _flash(q.transpose(0, 1).reshape(kv_heads * batch, 1, group, head_dim),
                      keys.view(kv_heads * batch, 1, length, head_dim),
                      values.view(kv_heads * batch, 1, length, head_dim), mask, scale)
    return (out.view(kv_heads, batch, group, head_dim).transpose(0, 1),
            lse.view(kv_heads, batch, group).transpose(0, 1))


def _attend_chunk(q, keys, values, scale):
    """A prefill chunk q [n, kvh, group, D], the last n of `keys`/`values` [kvh, m, D],
    causally. -> out [n, kvh, group, D], lse."""
    n, _, group, _ = q.shape
    m = keys.shape[1]
    mask = torch.zeros(n, m, dtype=q.dtype)
    mask.masked_fill_(torch.arange(m) > torch.arange(m - n, m).unsqueeze(1), float("-inf"))
    out, lse = _flash(q.permute(1, 2, 0, 3), keys.unsqueeze(1).expand(-1, group, -1, -1),
                      values.unsqueeze(1).expand(-1, group, -1, -1), mask.view(1, 1, n, m),
                      scale)
    return out.permute(2, 0, 1, 3), lse.permute(2, 0, 1)


def _add_shared_prefix(q, out, lse, keys, values, scale):
    """Merge into (out, lse) of every query token q [T, kvh, group, D] its attention over the
    shared prefix keys/values [kvh, P, D], which lie before every query: no mask."""
    tokens, kv_heads, group, head_dim = q.shape
    rows = q.permute(1, 0, 2, 3).reshape(1, kv_heads, tokens * group, head_dim)
    prefix_out, prefix_lse = _flash(rows, keys.unsqueeze(0), values.unsqueeze(0), None, scale)
    prefix_out = prefix_out.view(kv_heads, tokens, group, head_dim).transpose(0, 1)
    prefix_lse = prefix_lse.view(kv_heads, tokens, group).transpose(0, 1)
    total = torch.logaddexp(lse, prefix_lse)  # merged in float32
    return (out.float() * (lse - total).exp().unsqueeze(-1)
            + prefix_out.float() * (prefix_lse - total).exp().unsqueeze(-1))


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
