"""Triton paged-attention kernels, run on CPU tensors by Triton's interpreter.

Each case builds a paged KV cache whose block ids are shuffled, writes the step's new keys
and values with `write_kv_cache`, runs `paged_attention`, and compares with a plain torch
reference that gathers every sequence's blocks and applies the causal mask with its prefix
offset in fp32.
"""

import os

# The interpreter is chosen when a kernel is decorated, so this must precede importing triton.
os.environ["TRITON_INTERPRET"] = "1"

import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

try:
    import triton  # noqa: E402
    from triton.runtime.jit import JITFunction  # noqa: E402
except ImportError:  # pragma: no cover
    pytest.skip(
        "triton is not installed (it comes with the test extras); the Triton kernels "
        "cannot be tested",
        allow_module_level=True,
    )

# If triton was imported earlier in this process without TRITON_INTERPRET (torch._dynamo
# imports it, e.g. under transformers in another test file), triton's own library functions
# (tl.sum, tl.max, tl.cdiv) were built for GPUs and the interpreter cannot call them. Then
# the tests below are skipped here and `test_in_a_fresh_python` runs this file in a new
# process instead. Setting TRITON_INTERPRET=1 in tests/conftest.py avoids the detour.
TRITON_NOT_INTERPRETED = isinstance(triton.language.sum, JITFunction)

from callm.model_executor.attention_metadata import AttentionMetadata  # noqa: E402
from callm.model_executor.kernels.paged_attention import (  # noqa: E402
    paged_attention,
    write_kv_cache,
)


@pytest.fixture(autouse=True)
def _interpreted_triton(request):
    if TRITON_NOT_INTERPRETED and request.node.originalname != "test_in_a_fresh_python":
        pytest.skip("triton was imported before TRITON_INTERPRET=1 was set in this process; "
                    "test_in_a_fresh_python runs this case")


def test_in_a_fresh_python(request):
    if not TRITON_NOT_INTERPRETED:
        pytest.skip("triton is interpreted in this process: the cases run directly")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider"],
        cwd=request.config.rootpath, env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


# ------------------------------------------------------------------------------------------
# Reference and batch construction
# ------------------------------------------------------------------------------------------


def reference_attention(query, key_cache, value_cache, meta, scale):
    """Per sequence: gather its blocks in table order, causal mask offset by the prefix."""
    num_tokens, num_heads, head_dim = query.shape
    block_size, num_kv_heads = key_cache.shape[1], key_cache.shape[2]
    group = num_heads // num_kv_heads
    out = torch.zeros(num_tokens, num_heads, head_dim, dtype=torch.float32)
    for s in range(meta.num_seqs):
        first, last = int(meta.query_start_loc[s]), int(meta.query_start_loc[s + 1])
        seq_len, q_len = int(meta.seq_lens[s]), last - first
        blocks = meta.block_tables[s, : math.ceil(seq_len / block_size)].long()
        k = key_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:seq_len].float()
        v = value_cache[blocks].reshape(-1, num_kv_heads, head_dim)[:seq_len].float()
        k = k.repeat_interleave(group, dim=1)  # [seq_len, heads, dim]
        v = v.repeat_interleave(group, dim=1)
        q = query[first:last].float()  # [q_len, heads, dim]
        scores = torch.einsum("qhd,khd->hqk", q, k) * scale
        q_pos = torch.arange(seq_len - q_len, seq_len)
        visible = torch.arange(seq_len)[None, :] <= q_pos[:, None]
        scores = scores.masked_fill(~visible, float("-inf"))
        out[first:last] = torch.einsum("hqk,khd->qhd", scores.softmax(dim=-1), v)
    return out


def make_batch(seqs, *, num_heads, num_kv_heads, head_dim, block_size, dtype=torch.float32,
               extra_blocks=3, seed=0):
    """seqs: [(cached_len, query_len)]. Returns query, new key/value, caches, metadata.

    The caches start random (cached prefixes are already "there"), block ids are handed out
    in a shuffled order, and block-table entries past each sequence's blocks are 0.
    """
    gen = torch.Generator().manual_seed(seed)
    seq_lens = [cached + q_len for cached, q_len in seqs]
    blocks_per_seq = [math.ceil(n / block_size) for n in seq_lens]
    num_blocks = sum(blocks_per_seq) + extra_blocks
    order = torch.randperm(num_blocks, generator=gen)
    max_blocks = max(blocks_per_seq)
    block_tables = torch.zeros(len(seqs), max_blocks, dtype=torch.int32)
    slots, used = [], 0
    for s, ((cached, q_len), n_blocks) in enumerate(zip(seqs, blocks_per_seq)):
        table = order[used : used + n_blocks]
        used += n_blocks
        block_tables[s, :n_blocks] = table.to(torch.int32)
        for pos in range(cached, cached + q_len):
            slots.append(int(table[pos // block_size]) * block_size + pos % block_size)
    num_tokens = len(slots)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(dtype)

    cache_shape = (num_blocks, block_size, num_kv_heads, head_dim)
    query_lens = [q_len for _, q_len in seqs]
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.int64),
        query_start_loc=torch.tensor([0, *torch.tensor(query_lens).cumsum(0).tolist()],
                                     dtype=torch.int32),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        block_tables=block_tables,
        max_query_len=max(query_lens),
        max_seq_len=max(seq_lens),
    )
    return dict(
        query=rand(num_tokens, num_heads, head_dim),
        key=rand(num_tokens, num_kv_heads, head_dim),
        value=rand(num_tokens, num_kv_heads, head_dim),
        key_cache=rand(*cache_shape),
        value_cache=rand(*cache_shape),
        meta=meta,
    )


def run_and_compare(batch, *, atol=1e-5, rtol=1e-4, **attn_kwargs):
    write_kv_cache(batch["key"], batch["value"], batch["key_cache"], batch["value_cache"],
                   batch["meta"].slot_mapping)
    scale = batch["query"].shape[-1] ** -0.5
    out = paged_attention(batch["query"], batch["key_cache"], batch["value_cache"],
                          batch["meta"], scale, **attn_kwargs)
    ref = reference_attention(batch["query"], batch["key_cache"], batch["value_cache"],
                              batch["meta"], scale)
    assert out.shape == batch["query"].shape and out.dtype == batch["query"].dtype
    torch.testing.assert_close(out.float(), ref, atol=atol, rtol=rtol)
    return out


# A decode token, a prefill with no prefix, a prefill chunk after a cached prefix.
MIXED = [(20, 1), (0, 13), (19, 6)]


# ------------------------------------------------------------------------------------------
# write_kv_cache
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_write_kv_cache_places_each_token_and_skips_padding(dtype):
    gen = torch.Generator().manual_seed(1)
    num_blocks, block_size, kv_heads, head_dim = 5, 4, 3, 32  # 3 heads: non power of two
    key_cache = torch.zeros(num_blocks, block_size, kv_heads, head_dim, dtype=dtype)
    value_cache = torch.zeros_like(key_cache)
    slots = torch.tensor([13, 2, -1, 7, 19, 0], dtype=torch.int64)
    # Keys come out of a wider tensor (a fused qkv projection): token stride != heads*dim.
    fused = torch.randn(len(slots), 2 * kv_heads, head_dim, generator=gen).to(dtype)
    key, value = fused[:, :kv_heads], fused[:, kv_heads:]
    write_kv_cache(key, value, key_cache, value_cache, slots)

    expected_k = torch.zeros_like(key_cache).view(-1, kv_heads, head_dim)
    expected_v = torch.zeros_like(value_cache).view(-1, kv_heads, head_dim)
    real = slots >= 0
    expected_k[slots[real]] = key[real]
    expected_v[slots[real]] = value[real]
    assert torch.equal(key_cache.view(-1, kv_heads, head_dim), expected_k)
    assert torch.equal(value_cache.view(-1, kv_heads, head_dim), expected_v)


# ------------------------------------------------------------------------------------------
# paged_attention
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [16, 32, 1, 5])
def test_mixed_batch_fp32(block_size):
    batch = make_batch(MIXED, num_heads=4, num_kv_heads=2, head_dim=64, block_size=block_size)
    run_and_compare(batch)


@pytest.mark.parametrize("num_heads, num_kv_heads", [(4, 1), (6, 2), (3, 3)])
def test_gqa_mqa_mha(num_heads, num_kv_heads):
    batch = make_batch(MIXED, num_heads=num_heads, num_kv_heads=num_kv_heads, head_dim=32,
                       block_size=16, seed=2)
    run_and_compare(batch)


@pytest.mark.parametrize("head_dim", [16, 128, 80])
def test_head_dims(head_dim):
    batch = make_batch([(5, 1), (9, 4)], num_heads=2, num_kv_heads=1, head_dim=head_dim,
                       block_size=16, seed=3)
    run_and_compare(batch)


def test_long_prefill_spans_several_query_tiles():
    # 8 heads per KV head → 8 query tokens per program, so 21 queries need 3 programs.
    batch = make_batch([(11, 21), (0, 3)], num_heads=8, num_kv_heads=1, head_dim=16,
                       block_size=16, seed=4)
    run_and_compare(batch)


@pytest.mark.parametrize("num_splits", [1, 4])
def test_decode_batch(num_splits):
    # Context lengths off block boundaries, one longer than a few key tiles.
    seqs = [(0, 1), (16, 1), (30, 1), (150, 1), (15, 1)]
    batch = make_batch(seqs, num_heads=4, num_kv_heads=2, head_dim=64, block_size=16, seed=5)
    run_and_compare(batch, num_splits=num_splits)


def test_padding_tokens_are_skipped_and_out_is_filled_in_place():
    batch = make_batch(MIXED, num_heads=4, num_kv_heads=2, head_dim=32, block_size=16, seed=6)
    meta = batch["meta"]
    # Two padding tokens at the end of the batch: slot -1, owned by no sequence.
    pad_kv = torch.full((2, 2, 32), 1e4)
    key = torch.cat([batch["key"], pad_kv])
    value = torch.cat([batch["value"], pad_kv])
    slots = torch.cat([meta.slot_mapping, torch.tensor([-1, -1])])
    cache_before = batch["key_cache"].clone()
    write_kv_cache(key, value, batch["key_cache"], batch["value_cache"], slots)
    assert not (batch["key_cache"] == 1e4).any()
    assert (batch["key_cache"] != cache_before).sum() == batch["key"].numel()

    # Query arrives as a strided slice of a fused projection output, with padding rows.
    num_real = batch["query"].shape[0]
    fused = torch.randn(num_real + 2, 4 + 2 + 2, 32)
    fused[:num_real, :4] = batch["query"]
    query = fused[:, :4]
    out = torch.full((num_real + 2, 4, 32), 7.0)
    result = paged_attention(query, batch["key_cache"], batch["value_cache"], meta, 0.125,
                             out=out)
    assert result is out
    ref = reference_attention(batch["query"], batch["key_cache"], batch["value_cache"],
                              meta, 0.125)
    torch.testing.assert_close(out[:num_real], ref, atol=1e-5, rtol=1e-4)
    assert (out[num_real:] == 7.0).all()  # rows owned by no sequence are left alone


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    batch = make_batch(MIXED, num_heads=4, num_kv_heads=2, head_dim=64, block_size=16,
                       dtype=dtype, seed=7)
    # The reference sees the same rounded inputs; only the output rounding differs.
    tol = 2e-3 if dtype == torch.float16 else 1.6e-2
    run_and_compare(batch, atol=tol, rtol=tol)


@pytest.mark.parametrize("seqs", [MIXED, [(0, 1), (16, 1), (40, 1)]])
def test_matches_torch_attention_backend(seqs):
    from callm.model_executor.layers.attention import (
        TorchAttentionBackend,
        TritonAttentionBackend,
    )

    batch = make_batch(seqs, num_heads=6, num_kv_heads=2, head_dim=32, block_size=16, seed=8)
    args = (batch["query"], batch["key"], batch["value"])
    # The torch backend keeps [kv_heads, blocks, block_size, head_dim]; Triton's kernels
    # [blocks, block_size, kv_heads, head_dim].
    torch_caches = (batch["key_cache"].permute(2, 0, 1, 3).contiguous(),
                    batch["value_cache"].permute(2, 0, 1, 3).contiguous())
    expected = TorchAttentionBackend()(*args, *torch_caches, batch["meta"], 0.2)
    got = TritonAttentionBackend()(*args, batch["key_cache"], batch["value_cache"],
                                   batch["meta"], 0.2)
    assert torch.equal(batch["key_cache"], torch_caches[0].permute(1, 2, 0, 3))
    assert torch.equal(batch["value_cache"], torch_caches[1].permute(1, 2, 0, 3))
    torch.testing.assert_close(got.float(), expected, atol=1e-5, rtol=1e-4)


def test_bad_arguments_raise_value_error():
    batch = make_batch([(0, 2)], num_heads=3, num_kv_heads=2, head_dim=16, block_size=4)
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        paged_attention(batch["query"], batch["key_cache"], batch["value_cache"],
                        batch["meta"], 0.25)
    decode = make_batch([(3, 1)], num_heads=2, num_kv_heads=2, head_dim=16, block_size=4)
    with pytest.raises(ValueError, match="num_splits"):
        paged_attention(decode["query"], decode["key_cache"], decode["value_cache"],
                        decode["meta"], 0.25, num_splits=3)
    with pytest.raises(ValueError, match="key and value"):
        write_kv_cache(batch["key"][:, :1], batch["value"], batch["key_cache"],
                       batch["value_cache"], batch["meta"].slot_mapping)
