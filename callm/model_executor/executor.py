"""Executors run the Worker(s) for the engine, behind one interface: `num_blocks`,
`execute_model(seqs) -> logits [len(seqs), vocab] float32`, `check_health()`, `shutdown()`.

- `uni`: one Worker in this process (the default at tensor_parallel_size 1);
- `mp`: one process per tensor-parallel rank on this machine (the default above 1);
- `ray`: one Ray actor per rank, on an existing Ray cluster (`RAY_ADDRESS`, `ray start`) or a
  local one started for the engine.
The multi-rank executors live in `distributed_executor.py`; `make_executor` picks one.
"""

import dataclasses
import logging
import os

import torch

from callm.config import EngineConfig
from callm.model_executor.worker import SequenceInput, Worker, load_model

logger = logging.getLogger(__name__)

DEFAULT_KV_CAP = 2 * 2**30  # bytes: plenty for the small models this CPU serves
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
BACKENDS = ("uni", "mp", "ray")


class WorkerDiedError(RuntimeError):
    """A tensor-parallel worker died or failed; the executor cannot run another step."""


def make_executor(config: EngineConfig, model_path, max_model_len: int):
    """The executor `config` asks for: `distributed_executor_backend`, or by default `uni` for
    one rank and `mp` for several."""
    if config.dtype == "auto":  # the engine resolves it first (and logs why); direct callers
        from callm.model_executor.dtype import resolve_dtype

        config = dataclasses.replace(config, dtype=resolve_dtype("auto").dtype)
    tp = config.tensor_parallel_size
    if not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tensor_parallel_size must be a positive integer, got {tp!r}")
    backend = config.distributed_executor_backend or ("uni" if tp == 1 else "mp")
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed_executor_backend {backend!r}; use one of "
                         f"{', '.join(BACKENDS)}")
    if backend == "uni":
        if tp > 1:
            raise ValueError("the uni executor runs a single rank; use "
                             "distributed_executor_backend 'mp' or 'ray' for "
                             f"tensor_parallel_size {tp}")
        return UniExecutor(config, model_path, max_model_len)
    from callm.model_executor.distributed_executor import MultiprocExecutor, RayExecutor

    executor = MultiprocExecutor if backend == "mp" else RayExecutor
    return executor(config, model_path, max_model_len)


def kv_cache_budget(config: EngineConfig) -> int:
    if config.kv_cache_memory is not None:
        return config.kv_cache_memory
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return min(int(available * 0.25), DEFAULT_KV_CAP)


class UniExecutor:
    def __init__(self, config: EngineConfig, model_path, max_model_len: int):
        dtype = DTYPES[config.dtype]
        self.model = load_model(model_path, dtype, max_model_len, config.attention_backend,
                                config.quantization)
        per_block = Worker.bytes_per_block(self.model, config.block_size)
        self.num_blocks = max(kv_cache_budget(config) // per_block,
                              -(-max_model_len // config.block_size))
        self.worker = Worker(self.model, self.num_blocks, config.block_size)

    def execute_model(self, seqs: list[SequenceInput]) -> torch.Tensor:
        return self.worker.execute_model(seqs)

    def check_health(self) -> None:
        """Raise WorkerDiedError when a worker is gone (never, in process)."""

    def shutdown(self) -> None:
        pass
