"""One tensor-parallel rank: a process of the `mp` executor or an actor of the `ray` executor.

A `RankWorker` joins the torch.distributed group, builds its shard of the model (reading only
its slices of the checkpoint), owns its share of the KV cache (its own kv heads, the same block
count as every rank) and runs each step it is sent. Every rank computes the same full logits;
rank 0 returns them and the others return None.

The `mp` executor starts `python -m callm.model_executor.tp_worker FD RANK WORLD_SIZE` with one
end of a socket pair as FD, sends `(call id, method, args)` pickles and reads back
`(call id, "ok", result)` or `(call id, "error", traceback)`. The worker exits when the engine says "shutdown", when the engine's end
of the socket closes (the engine died), or after a failure.
"""

import logging
import os
import signal
import socket
import sys
import time
import traceback
from pathlib import Path

import torch

from callm.model_executor import parallel_state
from callm.model_executor.worker import SequenceInput, Worker, load_model

logger = logging.getLogger(__name__)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def node_ip() -> str:
    """The address other ranks reach this machine at: Ray's view of the node inside a Ray
    actor, loopback otherwise (the `mp` executor is single-machine)."""
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return ray.util.get_node_ip_address()
    return "127.0.0.1"


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class RankWorker:
    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self.model = None
        self.worker: Worker | None = None

    def node_info(self) -> dict:
        return {"rank": self.rank, "pid": os.getpid(), "host": socket.gethostname(),
                "ip": node_ip(), "cpus": available_cpus()}

    def free_port(self, ip: str) -> int:
        return free_port(ip)

    def load(self, config, model_path: str, max_model_len: int, init_method: str,
             threads: list[int]) -> int:
        """Join the group, build and load this rank's shard; returns its KV bytes per block."""
        from callm.model_executor.executor import DTYPES

        torch.set_num_threads(threads[self.rank])
        # The model runs on CPU in this version: gloo. (NCCL is the backend for CUDA ranks.)
        parallel_state.init_distributed(self.rank, self.world_size, init_method, backend="gloo")
        start = time.perf_counter()
        self.model = load_model(Path(model_path), DTYPES[config.dtype], max_model_len,
                                config.attention_backend, config.quantization)
        logger.info("rank %d/%d: shard loaded in %.1f s (%d threads)", self.rank,
                    self.world_size, time.perf_counter() - start, threads[self.rank])
        return Worker.bytes_per_block(self.model, config.block_size)

    def init_cache(self, num_blocks: int, block_size: int) -> None:
        self.worker = Worker(self.model, num_blocks, block_size)

    def execute_model(self, seqs: list[SequenceInput]):
        logits = self.worker.execute_model(seqs)
        return logits.numpy() if self.rank == 0 else None

    def ping(self) -> int:
        return self.rank

    # ----- measurements (benchmarks) -----

    def comm_timing(self, enabled: bool) -> None:
        parallel_state.comm_timing(enabled)

    def comm_stats(self) -> dict:
        return dict(parallel_state.comm_stats)

    def bench_all_reduce(self, numel: int, dtype: str, iters: int) -> float:
        """Seconds per all-reduce of `numel` elements, ranks in step (a barrier first)."""
        x = torch.ones(numel, dtype=getattr(torch, dtype))
        for _ in range(5):
            torch.distributed.all_reduce(x)
        torch.distributed.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            torch.distributed.all_reduce(x)
        return (time.perf_counter() - start) / iters

    def shutdown(self) -> None:
        self.worker = self.model = None
        parallel_state.destroy_distributed()


def main(argv: list[str]) -> int:
    from multiprocessing.connection import Connection

    fd, rank, world_size = (int(a) for a in argv)
    logging.basicConfig(level=logging.INFO,
                        format=f"%(levelname)s (rank {rank}) %(name)s: %(message)s")
    # Ctrl-C reaches the whole process group: the engine process shuts its workers down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(fd)
    worker = RankWorker(rank, world_size)
    while True:
        try:
            call, method, args = conn.recv()
        except (EOFError, OSError):  # the engine is gone
            return 1
        if method == "shutdown":
            worker.shutdown()
            conn.send((call, "ok", None))
            return 0
        try:
            result = getattr(worker, method)(*args)
        except BaseException as e:
            logger.error("rank %d failed in %s: %s", rank, method, e)
            try:
                conn.send((call, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))
            except OSError:
                pass
            return 1  # exiting closes this rank's connections, so peers stop waiting on it
        try:
            conn.send((call, "ok", result))
        except OSError:
            return 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skip the interpreter's teardown (a second with torch loaded): nothing to save
