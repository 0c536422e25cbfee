"""Triton kernels for the paged KV cache: writing new keys/values, and causal attention over them.

Two public launchers:

* `write_kv_cache(key, value, key_cache, value_cache, slot_mapping)` stores each batch token's
  key/value vectors at its flat cache slot (`slot < 0` = padding, skipped).
* `paged_attention(query, key_cache, value_cache, meta, scale, out=None)` runs causal
  attention for a flat batch that mixes decode tokens, prefills and prefill chunks after a
  cached prefix. Every key/value, the step's own included, is read from the paged cache, so
  `write_kv_cache` must run first.

How the attention kernel is laid out
------------------------------------
One program handles one sequence, one KV head and a tile of `BLOCK_Q` consecutive query
tokens of that sequence. Its rows are (query token, query head of the KV head's group) pairs,
so every key/value tile loaded from the cache serves the whole GQA group at once; the row
count is padded up to 16 (the smallest `tl.dot` operand on GPUs) and padding rows are masked.

Keys are walked in tiles of `TILE_N` context positions that are independent of the cache's
block size: each position looks its physical block up in the block table, so any block size
(1 included, powers of two or not) works, and block ids may come in any order. Softmax is the
online (flash-attention) kind in base 2, with fp32 running max, running sum and accumulator.

Decode batches (`max_query_len == 1`) may split each sequence's context into `num_splits`
ranges handled by separate programs (flash-decoding): each writes an unnormalised partial
result with its max and sum to a scratch buffer and a second small kernel merges them. This
keeps the GPU busy when a few sequences have long contexts. On CPU (the interpreter) the
launcher does not split unless asked.

Precision: every value is cast to fp32 right after `tl.load` (bf16 arithmetic is wrong in
Triton's CPU interpreter, and fp32 accumulation is wanted anyway). Dots on fp32 inputs use
IEEE fp32; on fp16/bf16 inputs they may use TF32 tensor cores, which hold fp16 and bf16
operands exactly.

Rows of `out` that belong to no sequence (batch padding after `query_start_loc[-1]`) are left
untouched. Head dims are any size (padded to a power of two ≥ 16 internally and masked).
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

import torch

try:
    import triton
    import triton.language as tl

    HAS_TRITON = True
    _jit = triton.jit
except ImportError:  # pragma: no cover - exercised only on machines without triton
    # The kernels below stay plain functions and the launchers refuse to run. Their
    # `tl.constexpr` annotations are strings (postponed evaluation), so `tl` need not exist.
    HAS_TRITON = False
    triton = tl = None

    def _jit(fn):
        return fn


if TYPE_CHECKING:
    from callm.model_executor.attention_metadata import AttentionMetadata

__all__ = ["HAS_TRITON", "paged_attention", "write_kv_cache"]

# Smallest extent of each tl.dot operand dimension on NVIDIA GPUs.
_MIN_DOT = 16
# Most partial results a decode sequence is split into.
_MAX_SPLITS = 16


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@_jit
def _write_kv_cache_kernel(
    key_ptr,
    value_ptr,
    key_cache_ptr,
    value_cache_ptr,
    slot_mapping_ptr,
    stride_key_t,
    stride_key_h,
    stride_value_t,
    stride_value_h,
    stride_kc_block,
    stride_kc_slot,
    stride_kc_head,
    stride_vc_block,
    stride_vc_slot,
    stride_vc_head,
    NUM_KV_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_D: tl.constexpr,
    BLOCK_SIZE: tl.constexpr,
):
    """One program per batch token: copy its [kv_heads, head_dim] key and value to its slot."""
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_mapping_ptr + token).to(tl.int64)
    heads = tl.arange(0, BLOCK_H)[:, None]
    dims = tl.arange(0, BLOCK_D)[None, :]
    # Padding tokens carry slot -1 and write nothing. (tl.where rather than `& (slot >= 0)`:
    # the interpreter mishandles a scalar bool combined with a block of bools.)
    mask = tl.where(slot >= 0, (heads < NUM_KV_HEADS) & (dims < HEAD_DIM), False)
    slot = tl.maximum(slot, 0)
    block = slot // BLOCK_SIZE
    offset = slot % BLOCK_SIZE

    k = tl.load(key_ptr + token * stride_key_t + heads * stride_key_h + dims, mask=mask)
    v = tl.load(value_ptr + token * stride_value_t + heads * stride_value_h + dims, mask=mask)
    k_dst = block * stride_kc_block + offset * stride_kc_slot + heads * stride_kc_head + dims
    v_dst = block * stride_vc_block + offset * stride_vc_slot + heads * stride_vc_head + dims
    tl.store(key_cache_ptr + k_dst, k.to(key_cache_ptr.dtype.element_ty), mask=mask)
    tl.store(value_cache_ptr + v_dst, v.to(value_cache_ptr.dtype.element_ty), mask=mask)


@_jit
def _paged_attention_kernel(
    query_ptr,
    key_cache_ptr,
    value_cache_ptr,
    out_ptr,
    block_tables_ptr,
    seq_lens_ptr,
    query_start_loc_ptr,
    split_acc_ptr,
    split_max_ptr,
    split_sum_ptr,
    scale_log2,  # softmax scale × log2(e): scores are exponentiated with exp2
    stride_q_t,
    stride_q_h,
    stride_o_t,
    stride_o_h,
    stride_kc_block,
    stride_kc_slot,
    stride_kc_head,
    stride_vc_block,
    stride_vc_slot,
    stride_vc_head,
    stride_bt_seq,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,  # HEAD_DIM padded to a power of two ≥ 16
    GROUP: tl.constexpr,  # query heads per KV head
    BLOCK_G: tl.constexpr,  # GROUP padded to a power of two
    BLOCK_Q: tl.constexpr,  # query tokens per program
    BLOCK_M: tl.constexpr,  # rows = max(16, BLOCK_Q * BLOCK_G)
    TILE_N: tl.constexpr,  # context positions per inner-loop step
    BLOCK_SIZE: tl.constexpr,  # positions per cache block
    NUM_SPLITS: tl.constexpr,  # > 1 only for decode batches (one query token per sequence)
    DOT_PRECISION: tl.constexpr,
):
    tl.static_assert(NUM_SPLITS == 1 or BLOCK_Q == 1)
    seq = tl.program_id(0)
    kv_head = tl.program_id(1)
    q_block = tl.program_id(2) // NUM_SPLITS
    split = tl.program_id(2) % NUM_SPLITS

    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    seq_len = tl.load(seq_lens_ptr + seq)
    prefix_len = seq_len - q_len  # context positions cached before this step's first token

    # Row r of this program = query token (r // BLOCK_G) of the tile, head (r % BLOCK_G) of
    # the group.
    rows = tl.arange(0, BLOCK_M)
    q_in_tile = rows // BLOCK_G
    head_in_group = rows % BLOCK_G
    q_idx = q_block * BLOCK_Q + q_in_tile
    head = kv_head * GROUP + head_in_group
    row_ok = (q_in_tile < BLOCK_Q) & (head_in_group < GROUP) & (q_idx < q_len)
    q_pos = prefix_len + q_idx  # absolute position: it sees context positions 0..q_pos
    token = (q_start + q_idx).to(tl.int64)

    dims = tl.arange(0, BLOCK_D)
    dim_ok = dims < HEAD_DIM
    q_ptrs = query_ptr + token[:, None] * stride_q_t + head[:, None] * stride_q_h + dims[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None] & dim_ok[None, :], other=0.0).to(tl.float32)

    # Positions this tile can see end just after its last real query token's position.
    tile_first = q_block * BLOCK_Q
    kv_end = prefix_len + tl.minimum(tile_first + BLOCK_Q, q_len)
    kv_end = tl.where(tile_first < q_len, kv_end, 0)
    # This program's share of [0, kv_end): a whole number of TILE_N steps per split.
    tiles_per_split = tl.cdiv(tl.cdiv(kv_end, TILE_N), NUM_SPLITS)
    kv_lo = split * tiles_per_split * TILE_N
    kv_hi = tl.minimum(kv_lo + tiles_per_split * TILE_N, kv_end)

    # Running max starts finite so that rows with nothing visible yet never compute inf - inf.
    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)

    offs_n = tl.arange(0, TILE_N)
    table_row = block_tables_ptr + seq.to(tl.int64) * stride_bt_seq
    for start in range(kv_lo, kv_hi, TILE_N):
        pos = start + offs_n
        pos_ok = pos < kv_hi
        block_id = tl.load(table_row + pos // BLOCK_SIZE, mask=pos_ok, other=0).to(tl.int64)
        in_block = pos % BLOCK_SIZE
        k_base = block_id * stride_kc_block + in_block * stride_kc_slot + kv_head * stride_kc_head
        v_base = block_id * stride_vc_block + in_block * stride_vc_slot + kv_head * stride_vc_head

        # K is loaded transposed, [BLOCK_D, TILE_N], ready for q @ k.
        k = tl.load(
            key_cache_ptr + k_base[None, :] + dims[:, None],
            mask=pos_ok[None, :] & dim_ok[:, None],
            other=0.0,
        ).to(tl.float32)
        scores = tl.dot(q, k, input_precision=DOT_PRECISION) * scale_log2
        visible = pos_ok[None, :] & (pos[None, :] <= q_pos[:, None])
        scores = tl.where(visible, scores, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(scores, axis=1))
        alpha = tl.exp2(m_i - m_new)  # rescales what was accumulated under the old max
        p = tl.exp2(scores - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)

        v = tl.load(
            value_cache_ptr + v_base[:, None] + dims[None, :],
            mask=pos_ok[:, None] & dim_ok[None, :],
            other=0.0,
        ).to(tl.float32)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=DOT_PRECISION)
        m_i = m_new

    if NUM_SPLITS == 1:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]
        o_ptrs = out_ptr + token[:, None] * stride_o_t + head[:, None] * stride_o_h + dims[None, :]
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])
    else:
        # Decode: one query per sequence, so scratch is indexed [seq, head, split(, dim)].
        part = (seq.to(tl.int64) * NUM_HEADS + head) * NUM_SPLITS + split
        tl.store(split_max_ptr + part, m_i, mask=row_ok)
        tl.store(split_sum_ptr + part, l_i, mask=row_ok)
        acc_ptrs = split_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :]
        tl.store(acc_ptrs, acc, mask=row_ok[:, None] & dim_ok[None, :])


@_jit
def _merge_splits_kernel(
    out_ptr,
    split_acc_ptr,
    split_max_ptr,
    split_sum_ptr,
    query_start_loc_ptr,
    stride_o_t,
    stride_o_h,
    NUM_HEADS: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    BLOCK_D: tl.constexpr,
    NUM_SPLITS: tl.constexpr,
):
    """One program per (sequence, query head) of a decode batch: combine the partial results."""
    seq = tl.program_id(0)
    head = tl.program_id(1)
    token = tl.load(query_start_loc_ptr + seq)
    has_query = tl.load(query_start_loc_ptr + seq + 1) > token

    splits = tl.arange(0, NUM_SPLITS)
    dims = tl.arange(0, BLOCK_D)
    # Masks are blocks chosen by tl.where: the interpreter mishandles `scalar_bool & block`.
    split_ok = tl.where(has_query, splits < NUM_SPLITS, False)
    dim_ok = tl.where(has_query, dims < HEAD_DIM, False)
    part = (seq.to(tl.int64) * NUM_HEADS + head) * NUM_SPLITS + splits
    m = tl.load(split_max_ptr + part, mask=split_ok, other=-1.0e30)
    l = tl.load(split_sum_ptr + part, mask=split_ok, other=0.0)  # noqa: E741
    acc = tl.load(
        split_acc_ptr + part[:, None] * HEAD_DIM + dims[None, :],
        mask=split_ok[:, None] & dim_ok[None, :],
        other=0.0,
    )
    weight = tl.exp2(m - tl.max(m, axis=0))  # splits that saw nothing carry weight 0
    total = tl.sum(weight * l, axis=0)
    out = tl.sum(acc * weight[:, None], axis=0) / tl.where(total > 0.0, total, 1.0)
    o_ptrs = out_ptr + token.to(tl.int64) * stride_o_t + head * stride_o_h + dims
    tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=dim_ok)


# --------------------------------------------------------------------------------------------
# Launchers
# --------------------------------------------------------------------------------------------


def _require_triton() -> None:
    if not HAS_TRITON:
        raise RuntimeError(
            "the Triton attention kernels need the `triton` package; install it or use the "
            "torch attention backend"
        )


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def _last_dim_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


def _check_caches(key_cache: torch.Tensor, value_cache: torch.Tensor) -> None:
    if key_cache.dim() != 4 or key_cache.shape != value_cache.shape:
        raise ValueError(
            "key_cache and value_cache must both be [num_blocks, block_size, num_kv_heads, "
            f"head_dim]; got {tuple(key_cache.shape)} and {tuple(value_cache.shape)}"
        )
    if key_cache.stride(-1) != 1 or value_cache.stride(-1) != 1:
        raise ValueError("the KV caches' head_dim axis must be contiguous")
    if key_cache.shape[1] < 1:
        raise ValueError("block_size must be at least 1")


def write_kv_cache(
    key: torch.Tensor,
    value: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
) -> None:
    """Store `key[t]`/`value[t]` ([T, num_kv_heads, head_dim]) at flat slot `slot_mapping[t]`.

    A slot is `block * block_size + offset` into caches shaped
    `[num_blocks, block_size, num_kv_heads, head_dim]`; tokens whose slot is negative are
    skipped. Values are converted to the caches' dtype.
    """
    _require_triton()
    _check_caches(key_cache, value_cache)
    _, block_size, num_kv_heads, head_dim = key_cache.shape
    num_tokens = key.shape[0]
    expected = (num_tokens, num_kv_heads, head_dim)
    if tuple(key.shape) != expected or tuple(value.shape) != expected:
        raise ValueError(
            f"key and value must be {list(expected)} to match the cache; got "
            f"{tuple(key.shape)} and {tuple(value.shape)}"
        )
    if slot_mapping.shape != (num_tokens,):
        raise ValueError(f"slot_mapping must be [{num_tokens}], got {tuple(slot_mapping.shape)}")
    if num_tokens == 0:
        return
    key = _last_dim_contiguous(key)
    value = _last_dim_contiguous(value)
    _write_kv_cache_kernel[(num_tokens,)](
        key,
        value,
        key_cache,
        value_cache,
        slot_mapping,
        key.stride(0),
        key.stride(1),
        value.stride(0),
        value.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        value_cache.stride(0),
        value_cache.stride(1),
        value_cache.stride(2),
        NUM_KV_HEADS=num_kv_heads,
        HEAD_DIM=head_dim,
        BLOCK_H=_next_pow2(num_kv_heads),
        BLOCK_D=_next_pow2(head_dim),
        BLOCK_SIZE=block_size,
    )


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _auto_num_splits(query: torch.Tensor, num_seqs: int, num_kv_heads: int,
                     max_seq_len: int, tile_n: int) -> int:
    """Split decode contexts only on a GPU, only while the grid is smaller than ~2 waves and
    each split still gets at least four key tiles."""
    if not query.is_cuda or _interpreting():
        return 1
    programs = max(1, num_seqs * num_kv_heads)
    target = 2 * _num_sms(query.device.index or 0)
    tiles = triton.cdiv(max(1, max_seq_len), tile_n)
    splits = 1
    while splits * 2 <= _MAX_SPLITS and programs * splits < target and tiles >= splits * 2 * 4:
        splits *= 2
    return splits


def paged_attention(
    query: torch.Tensor,
    key_cache: torch.Tensor,
    value_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    out: torch.Tensor | None = None,
    *,
    num_splits: int | None = None,
) -> torch.Tensor:
    """Causal attention of `query` [T, num_heads, head_dim] over the paged KV cache.

    Query token `i` of sequence `s` sits at position `seq_lens[s] - query_len_s + i` and
    attends to the sequence's context positions up to and including its own; keys and values
    of all of them (this step's too) are read from the caches through `meta.block_tables`.
    Returns `out` ([T, num_heads, head_dim], query's dtype unless given).

    `num_splits` (a power of two ≤ 16) splits each decode sequence's context across that many
    programs; it is used only when `meta.max_query_len == 1`, and chosen automatically (1 on
    CPU) when None.
    """
    _require_triton()
    _check_caches(key_cache, value_cache)
    _, block_size, num_kv_heads, head_dim = key_cache.shape
    if query.dim() != 3 or query.shape[2] != head_dim:
        raise ValueError(
            f"query must be [num_tokens, num_heads, {head_dim}], got {tuple(query.shape)}"
        )
    num_tokens, num_heads, _ = query.shape
    if num_heads % num_kv_heads != 0:
        raise ValueError(
            f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})"
        )
    if query.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"unsupported query dtype {query.dtype}")
    if out is None:
        out = torch.empty_like(query, memory_format=torch.contiguous_format)
    elif tuple(out.shape) != tuple(query.shape) or out.stride(-1) != 1:
        raise ValueError(
            f"out must be {tuple(query.shape)} with a contiguous last axis, "
            f"got {tuple(out.shape)}"
        )
    num_seqs = meta.seq_lens.shape[0]
    if num_tokens == 0 or num_seqs == 0 or meta.max_query_len == 0:
        return out
    query = _last_dim_contiguous(query)
    block_tables = meta.block_tables
    if block_tables.stride(-1) != 1:
        block_tables = block_tables.contiguous()

    group = num_heads // num_kv_heads
    block_g = _next_pow2(group)
    block_d = max(_MIN_DOT, _next_pow2(head_dim))
    decode = meta.max_query_len == 1
    if decode:
        block_q = 1
    else:
        block_q = max(1, min(64 // block_g, _next_pow2(meta.max_query_len)))
    block_m = max(_MIN_DOT, block_q * block_g)
    tile_n = 64 if block_d <= 64 else 32

    splits = 1
    if decode and num_splits is not None:
        splits = num_splits
        if splits < 1 or splits > _MAX_SPLITS or splits & (splits - 1):
            raise ValueError(
                f"num_splits must be a power of two in [1, {_MAX_SPLITS}], got {splits}"
            )
    elif decode:
        splits = _auto_num_splits(query, num_seqs, num_kv_heads, meta.max_seq_len, tile_n)

    if splits > 1:
        f32 = dict(device=query.device, dtype=torch.float32)
        split_acc = torch.empty(num_seqs * num_heads * splits * head_dim, **f32)
        split_max = torch.empty(num_seqs * num_heads * splits, **f32)
        split_sum = torch.empty(num_seqs * num_heads * splits, **f32)
    else:  # unused by the kernel; any tensor will do as a placeholder pointer
        split_acc = split_max = split_sum = out

    grid = (num_seqs, num_kv_heads, triton.cdiv(meta.max_query_len, block_q) * splits)
    _paged_attention_kernel[grid](
        query,
        key_cache,
        value_cache,
        out,
        block_tables,
        meta.seq_lens,
        meta.query_start_loc,
        split_acc,
        split_max,
        split_sum,
        float(scale) * 1.4426950408889634,  # log2(e)
        query.stride(0),
        query.stride(1),
        out.stride(0),
        out.stride(1),
        key_cache.stride(0),
        key_cache.stride(1),
        key_cache.stride(2),
        value_cache.stride(0),
        value_cache.stride(1),
        value_cache.stride(2),
        block_tables.stride(0),
        NUM_HEADS=num_heads,
        HEAD_DIM=head_dim,
        BLOCK_D=block_d,
        GROUP=group,
        BLOCK_G=block_g,
        BLOCK_Q=block_q,
        BLOCK_M=block_m,
        TILE_N=tile_n,
        BLOCK_SIZE=block_size,
        NUM_SPLITS=splits,
        DOT_PRECISION="ieee" if query.dtype == torch.float32 else "tf32",
        num_warps=4,
    )
    if splits > 1:
        _merge_splits_kernel[(num_seqs, num_heads)](
            out,
            split_acc,
            split_max,
            split_sum,
            meta.query_start_loc,
            out.stride(0),
            out.stride(1),
            NUM_HEADS=num_heads,
            HEAD_DIM=head_dim,
            BLOCK_D=block_d,
            NUM_SPLITS=splits,
        )
    return out
