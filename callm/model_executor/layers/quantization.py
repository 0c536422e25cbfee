"""Weights kept quantized in memory and multiplied quantized (`--quantization int8|int4`).

Decoding one token streams every weight from memory once, so its speed is bytes per weight:
int8 halves bf16's bytes and int4 quarters them. torch ships CPU kernels for both that take
bf16 activations: `_weight_int8pack_mm` (int8, one scale per output row) and
`_weight_int4pack_mm_for_cpu` (4-bit groups of 32 weights along the input, each with a scale
and a zero). For a few rows (decode) they beat a dense bf16 product several times over; for
many rows (prefill, big batches) a dense GEMM wins, so above a row count measured once per
process (`dense_above`) a product dequantizes the weight and runs dense instead. A float32
model casts activations to bf16 around the kernels (their float32 paths are slow fallbacks).

GGUF Q4_0/Q4_1/Q4_K blocks are groups of 32 weights with a scale and an offset, so int4 keeps
what a Q4 file holds; Q5/Q6/Q8 go to int8. Embeddings and the LM head are int8 in both modes
(llama.cpp's Q4_K_M also keeps its output matrix at higher precision): a row gather from int8
is one multiply, and the head is the largest matrix a small model multiplies per token.
"""

from __future__ import annotations

import functools
import threading
import time

import torch
from torch import nn

METHODS = ("auto", "none", "int8", "int4")
GROUP_SIZE = 32  # int4: weights per scale/zero pair along the input features (GGUF's block)
_PACK_BLOCK = 64  # output rows the CPU int4 packing interleaves (see `_unpack_int4`)


class Int8Weight:
    """`q[n, k] * scale[n]`, q int8, symmetric per output row."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype):
        w = weight.float()
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.scale = scale.to(torch.bfloat16)
        self.dtype = dtype
        self.shape = tuple(weight.shape)

    def dense(self) -> torch.Tensor:
        """The weight in the model dtype, in a reused buffer (`_scratch`: 10x faster than a
        fresh one for an LM head); valid until the next `dense()` of this shape."""
        out = _scratch(self.shape, self.dtype).copy_(self.q)
        return out.mul_(self.scale.to(self.dtype)[:, None])

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Dequantized rows (an embedding lookup)."""
        return self.q[index].to(self.dtype) * self.scale[index].to(self.dtype).unsqueeze(-1)

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int8pack_mm(_bf16(x), self.q, self.scale)


class Int4Weight:
    """4-bit groups of GROUP_SIZE input features: w = (q - 8) * scale + zero, in torch's CPU
    packed layout (needs out features % 64 == 0 and in features % GROUP_SIZE == 0)."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype):
        n, k = weight.shape
        groups = weight.float().reshape(n, k // GROUP_SIZE, GROUP_SIZE)
        low, high = groups.amin(-1, keepdim=True), groups.amax(-1, keepdim=True)
        scale = ((high - low) / 15).clamp(min=1e-12)
        q = torch.round((groups - low) / scale).clamp(0, 15).to(torch.int32).reshape(n, k)
        self.packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        zero = low + 8 * scale
        # [k / GROUP_SIZE, n, 2]: the kernel's scales-and-zeros layout
        self.scales_and_zeros = torch.stack([scale.squeeze(-1).t(), zero.squeeze(-1).t()],
                                            dim=-1).to(torch.bfloat16).contiguous()
        self.dtype = dtype
        self.shape = (n, k)

    @staticmethod
    def fits(weight: torch.Tensor) -> bool:
        n, k = weight.shape
        return n % _PACK_BLOCK == 0 and k % GROUP_SIZE == 0

    def dense(self) -> torch.Tensor:
        """The weight in the model dtype, computed in float32 in place (bf16 elementwise math
        on CPU is several times slower), in reused buffers (`_scratch`). Valid until the next
        `dense()` of a weight of the same shape."""
        n, k = self.shape
        w = _scratch((n, k // GROUP_SIZE, GROUP_SIZE), torch.float32)
        w.view(n // _PACK_BLOCK, _PACK_BLOCK, k).copy_(_unpack_int4(self.packed, n, k))
        sz = self.scales_and_zeros.transpose(0, 1).float()  # [n, groups, 2]
        scale = sz[..., :1]
        w.mul_(scale).add_(sz[..., 1:] - 8 * scale)
        return _scratch((n, k), self.dtype).copy_(w.view(n, k))

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.aten._weight_int4pack_mm_for_cpu(
            _bf16(x), self.packed, GROUP_SIZE, self.scales_and_zeros)


def _bf16(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.bfloat16 else x.to(torch.bfloat16)


def _unpack_int4(packed: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Undo `_convert_weight_to_int4pack_for_cpu`: per block of 64 output rows and per input
    feature, 32 bytes whose low nibbles are rows 0..31 and high nibbles rows 32..63 (checked
    against the packing at first use, `_int4_layout_ok`)."""
    blocks = packed.view(n // _PACK_BLOCK, k, _PACK_BLOCK // 2)
    q = _scratch((n // _PACK_BLOCK, k, _PACK_BLOCK), torch.uint8)  # [n / 64, k, 64]
    torch.bitwise_and(blocks, 15, out=q[..., :_PACK_BLOCK // 2])
    torch.bitwise_right_shift(blocks, 4, out=q[..., _PACK_BLOCK // 2:])
    return q.transpose(1, 2)  # [n / 64, 64, k]: a view, rows in order


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A buffer reused by every dequantization of this shape in this thread. A fresh tensor
    of tens of MB is a fresh mmap from the allocator, and its page faults cost more than the
    arithmetic (measured: 9 ms to convert an 8.7M-element weight into a new buffer, 0.2 ms
    into a used one). A model runs one step at a time, so one buffer per shape is enough."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (shape, dtype)
    if key not in buffers:
        buffers[key] = torch.empty(shape, dtype=dtype)
    return buffers[key]


@functools.cache
def _int4_layout_ok() -> bool:
    n, k = 2 * _PACK_BLOCK, 2 * GROUP_SIZE
    q = torch.randint(0, 16, (n, k), generator=torch.Generator().manual_seed(0),
                      dtype=torch.int32)
    try:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        return bool((_unpack_int4(packed, n, k).reshape(n, k).int() == q).all())
    except RuntimeError:
        return False


class QuantizedMatmul:
    """`x @ w.T (+ bias)` with `w` quantized: the packed kernel up to `dense_above` rows of
    `x`, a dequantized dense product beyond."""

    def __init__(self, weight, dense_above: int):
        self.weight = weight
        self.dense_above = dense_above

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[0] > self.dense_above and self._can_dense():
            return nn.functional.linear(x, self.weight.dense(), bias)
        y = self.weight.matmul(x)
        if y.dtype != x.dtype:  # (a Python check is cheaper than a no-op `to` dispatched)
            y = y.to(x.dtype)
        return y + bias if bias is not None else y

    def _can_dense(self) -> bool:
        return isinstance(self.weight, Int8Weight) or _int4_layout_ok()


def make_weight(method: str, weight: torch.Tensor, dtype: torch.dtype):
    """The quantized form of a [out, in] weight; int4 falls back to int8 where the packed
    layout cannot hold the shape."""
    if method == "int4" and Int4Weight.fits(weight):
        return Int4Weight(weight, dtype)
    return Int8Weight(weight, dtype)


# --- choosing: which method, and where dense wins ------------------------------------------

_PROBE_ROWS = (1, 8, 64, 512)  # decode batches up to a prefill chunk
_PROBE_SECONDS = 0.005  # per timing (at least 3 repetitions)


def _best_time(fn) -> float:
    fn()
    best, spent, reps = float("inf"), 0.0, 0
    while reps < 3 or spent < _PROBE_SECONDS:
        start = time.perf_counter()
        fn()
        took = time.perf_counter() - start
        best, spent, reps = min(best, took), spent + took, reps + 1
    return best


@functools.cache
def probe(method: str, dtype: torch.dtype, n: int, k: int) -> tuple[int, float]:
    """(dense_above, decode speedup) for an [n, k] weight on this machine: the most rows for
    which the quantized kernel still beats dequantize-then-dense (0: never), and the kernel's
    one-row speedup over the unquantized dense product. A fraction of a second, once per
    process and shape."""
    weight = torch.randn(n, k, generator=torch.Generator().manual_seed(0)) * 0.02
    dense_w = weight.to(dtype)
    matmul = QuantizedMatmul(make_weight(method, weight, dtype), dense_above=0)
    dense_above, speedup = 0, 0.0
    for rows in _PROBE_ROWS:
        x = torch.randn(rows, k).to(dtype)
        kernel = _best_time(lambda: matmul.weight.matmul(x))
        if rows == 1:
            speedup = _best_time(lambda: nn.functional.linear(x, dense_w)) / kernel
        if not matmul._can_dense() or kernel < _best_time(lambda: matmul(x)):
            dense_above = rows
        else:
            break
    if dense_above == _PROBE_ROWS[-1]:
        dense_above = 1 << 30  # the kernel wins everywhere measured
    return dense_above, speedup


def gguf_precision_class(quant_type: str | None) -> str:
    """int4 for 4-bit GGUF blocks, int8 for 5- to 8-bit ones, none for float files."""
    if not quant_type:
        return "none"
    name = quant_type.upper()
    if name.startswith(("Q4", "IQ4", "Q3", "IQ3", "Q2", "IQ2", "IQ1")):
        return "int4"
    if name.startswith(("Q5", "Q6", "Q8")):
        return "int8"
    return "none"


def resolve_quantization(requested: str, gguf_quant_type: str | None, dtype: torch.dtype,
                         shape: tuple[int, int]) -> tuple[str, str]:
    """(method, why) for `--quantization requested`. auto keeps the GGUF's precision class
    when the quantized kernel decodes faster than the dense product, measured on an [out, in]
    `shape` on this CPU."""
    if requested not in METHODS:
        raise ValueError(f"unknown quantization {requested!r}; use one of {', '.join(METHODS)}")
    if requested != "auto":
        return requested, "asked for"
    method = gguf_precision_class(gguf_quant_type)
    if method == "none":
        return "none", (f"weights stored as {gguf_quant_type}" if gguf_quant_type
                        else "not a quantized GGUF")
    _, speedup = probe(method, dtype, *shape)
    if speedup <= 1.0:
        return "none", (f"{gguf_quant_type} file, but {method} decodes {speedup:.2f}x the "
                        f"{str(dtype).removeprefix('torch.')} speed on this CPU")
    return method, f"{gguf_quant_type} file; {method} decodes {speedup:.1f}x faster here"


def quantize_model(model: nn.Module, method: str, dtype: torch.dtype) -> None:
    """Replace every linear weight and the embedding/LM head of a loaded model with its
    quantized form (the dense tensors are freed)."""
    from callm.model_executor.layers.linear import ColumnParallelLinear, RowParallelLinear
    from callm.model_executor.layers.vocab_embedding import VocabParallelEmbedding

    linear = (ColumnParallelLinear, RowParallelLinear)
    layers = [m for m in model.modules() if isinstance(m, linear)]
    if not layers:
        return
    # one probe per weight kind, on the largest linear: where dense wins depends on the
    # kernels far more than on the shape
    largest = max(layers, key=lambda m: m.weight.numel()).weight.shape
    dense_above = {kind: probe(kind, dtype, *largest)[0] for kind in {method, "int8"}}
    shared = {}  # a tied embedding and head quantize once
    for module in model.modules():
        if isinstance(module, linear):
            weight = make_weight(method, module.weight.data, dtype)
        elif isinstance(module, VocabParallelEmbedding):
            weight = shared.get(id(module.weight)) or Int8Weight(module.weight.data, dtype)
            shared[id(module.weight)] = weight
        else:
            continue
        kind = "int8" if isinstance(weight, Int8Weight) else "int4"
        del module.weight
        module.quantized = QuantizedMatmul(weight, dense_above[kind])
