"""The Worker: one model replica (one tensor-parallel rank) and its KV cache.

The engine's scheduler decides what runs each step and hands the worker a list of
`SequenceInput`s; the worker flattens them into one batch, runs the model over the paged KV
cache and returns the logits at each sequence's newest token.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from callm.model_executor.attention_metadata import AttentionMetadata
from callm.model_executor.models.registry import model_class

logger = logging.getLogger(__name__)


@dataclass
class SequenceInput:
    """One sequence's share of a step."""

    token_ids: list[int]  # tokens to run now: a prefill chunk, or the newest sampled token
    num_computed: int  # tokens of this sequence already in the KV cache
    block_table: list[int]  # its KV blocks, enough to hold num_computed + len(token_ids)


def build_batch(seqs: list[SequenceInput], block_size: int):
    """Flatten sequences into (input_ids, positions, AttentionMetadata)."""
    input_ids, positions, slots, starts, seq_lens = [], [], [], [0], []
    for seq in seqs:
        n = len(seq.token_ids)
        input_ids += seq.token_ids
        seq_positions = range(seq.num_computed, seq.num_computed + n)
        positions += seq_positions
        slots += [seq.block_table[p // block_size] * block_size + p % block_size
                  for p in seq_positions]
        starts.append(starts[-1] + n)
        seq_lens.append(seq.num_computed + n)
    width = max(len(seq.block_table) for seq in seqs)
    tables = [seq.block_table + [0] * (width - len(seq.block_table)) for seq in seqs]
    meta = AttentionMetadata(
        slot_mapping=torch.tensor(slots, dtype=torch.long),
        query_start_loc=torch.tensor(starts, dtype=torch.int32),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        block_tables=torch.tensor(tables, dtype=torch.int32),
        max_query_len=max(len(s.token_ids) for s in seqs),
        max_seq_len=max(seq_lens))
    return (torch.tensor(input_ids, dtype=torch.long), torch.tensor(positions, dtype=torch.long),
            meta)


def lazy_zeros(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Zeros the OS supplies page by page when first touched (numpy's calloc), so a large KV
    cache costs no resident memory until it is used. Zeros, not garbage: masked-out padding in
    attention must not hold NaNs."""
    nbytes = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    return torch.from_numpy(np.zeros(nbytes, dtype=np.uint8)).view(dtype).view(shape)


def check_dtype(dtype: torch.dtype, device: str = "cpu") -> torch.dtype:
    if dtype == torch.float16 and device == "cpu":
        raise ValueError("float16 is not supported on CPU (matrix products run ~400x slower than "
                         "bfloat16); use --dtype bfloat16 or float32")
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype}; use bfloat16 or float32")
    return dtype


def load_model(path: Path, dtype: torch.dtype = torch.bfloat16, max_positions: int | None = None,
               attention_backend: str | None = None, quantization: str = "none"):
    """Build the model for a GGUF file or HF folder and load its weights (a tensor-parallel
    rank builds its shard and reads only its slices of the checkpoint); `quantization`
    int8/int4 then keeps its matrices quantized (resolved already: no "auto" here)."""
    from callm.model_executor.loader import iter_weights, load_config
    from callm.model_executor.parallel_state import tp_size

    config = load_config(path)
    with torch.device("cpu"):
        model = model_class(config)(config, check_dtype(dtype), max_positions, attention_backend)
    model.load_weights(iter_weights(path, config, lazy=tp_size() > 1))
    if quantization not in ("none", "auto"):
        from callm.model_executor.layers.quantization import quantize_model

        quantize_model(model, quantization, dtype)
    return model.eval()


class Worker:
    """Owns one model and the KV cache it reads and writes."""

    def __init__(self, model: torch.nn.Module, num_blocks: int, block_size: int,
                 kv_dtype: torch.dtype | None = None):
        self.model = model
        self.block_size = block_size
        self.num_blocks = num_blocks
        attn_layers = [layer.self_attn.attn for layer in model.model.layers]
        first = attn_layers[0]
        kv_dtype = kv_dtype or next(model.parameters()).dtype
        layer_shape = first.backend.cache_shape(num_blocks, block_size, first.num_kv_heads,
                                                first.head_dim)
        self.kv_cache = lazy_zeros((len(attn_layers), 2, *layer_shape), kv_dtype)
        for layer, cache in zip(attn_layers, self.kv_cache):
            layer.kv_cache = (cache[0], cache[1])

    @staticmethod
    def bytes_per_block(model: torch.nn.Module, block_size: int,
                        kv_dtype: torch.dtype | None = None) -> int:
        attn = model.model.layers[0].self_attn.attn
        kv_dtype = kv_dtype or next(model.parameters()).dtype
        itemsize = torch.empty((), dtype=kv_dtype).element_size()
        return (2 * len(model.model.layers) * block_size * attn.num_kv_heads * attn.head_dim
                * itemsize)

    @torch.inference_mode()
    def execute_model(self, seqs: list[SequenceInput]) -> torch.Tensor:
        """Run one step; logits [len(seqs), vocab] at each sequence's last token."""
        input_ids, positions, meta = build_batch(seqs, self.block_size)
        hidden = self.model(input_ids, positions, meta)
        last = meta.query_start_loc[1:].long() - 1
        return self.model.compute_logits(hidden[last])
