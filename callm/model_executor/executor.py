"""Executors run the Worker(s) for the engine: `uni` keeps one Worker in this process.

The engine only calls `execute_model`, `num_blocks` and `shutdown`, so multi-process and Ray
executors (one Worker per tensor-parallel rank) can take its place.
"""

import logging
import os

import torch

from callm.config import EngineConfig
from callm.model_executor.worker import SequenceInput, Worker, load_model

logger = logging.getLogger(__name__)

DEFAULT_KV_CAP = 2 * 2**30  # bytes: plenty for the small models this CPU serves


def kv_cache_budget(config: EngineConfig) -> int:
    if config.kv_cache_memory is not None:
        return config.kv_cache_memory
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(int(available * 0.25), DEFAULT_KV_CAP)


class UniExecutor:
    def __init__(self, config: EngineConfig, model_path, max_model_len: int):
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "auto": torch.bfloat16,
                 "float16": torch.float16}[config.dtype]
        self.model = load_model(model_path, dtype, max_model_len, config.attention_backend)
        per_block = Worker.bytes_per_block(self.model, config.block_size)
        self.num_blocks = max(kv_cache_budget(config) // per_block,
                              -(-max_model_len // config.block_size))
        self.worker = Worker(self.model, self.num_blocks, config.block_size)

    def execute_model(self, seqs: list[SequenceInput]) -> torch.Tensor:
        return self.worker.execute_model(seqs)

    def shutdown(self) -> None:
        pass
