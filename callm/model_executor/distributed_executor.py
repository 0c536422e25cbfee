"""Multi-rank executors: one `RankWorker` per tensor-parallel rank, in processes (`mp`) or Ray
actors (`ray`).

The engine process stays outside the process group: it schedules and samples, sends each
step's `list[SequenceInput]` (a few small lists, pickled once) to every rank, and reads rank 0's
logits back (all ranks compute the same logits). Because it never blocks inside a collective, a
worker that dies is noticed at once — its socket closes (`mp`) or Ray reports the actor dead
(`ray`) — and `execute_model` raises `WorkerDiedError`; after that the executor only raises.

Start-up, the same for both backends:
1. check the model splits over the ranks (a clear ValueError before any process starts);
2. a GGUF is converted to its safetensors cache once, here, so ranks read slices of it;
3. start the ranks, ask where rank 0 lives and pick a free port there for the gloo rendezvous;
4. each rank joins the group and loads its shard, and reports its KV bytes per block;
5. this process fixes the block count (the KV budget covers all ranks together) and every rank
   allocates that many blocks.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections import Counter
from pathlib import Path

import torch

from callm.config import EngineConfig
from callm.model_executor.executor import WorkerDiedError, kv_cache_budget
from callm.model_executor.parallel_state import divide, head_partition
from callm.model_executor.worker import SequenceInput

logger = logging.getLogger(__name__)

POLL_S = 1.0  # how often a wait for replies also checks that every worker is alive
SHUTDOWN_GRACE_S = 5.0
RAY_PLACEMENT_TIMEOUT_S = 60.0
RAY_PING_TIMEOUT_S = 2.0
RAY_OBJECT_STORE_BYTES = 512 * 2**20  # for a Ray started here: only logits pass through it

_live: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _shutdown_all() -> None:
    """Leave no worker processes or Ray actors behind when the program exits without calling
    `shutdown()`."""
    for executor in list(_live):
        try:
            executor.shutdown()
        except Exception:  # exiting anyway
            pass


def check_tensor_parallel(model_config, tp: int) -> list[tuple[int, int]]:
    """ValueError when the model cannot be split over `tp` ranks; else (query heads, kv heads)
    per rank."""
    heads = getattr(model_config, "num_attention_heads", None)
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    split = []
    if heads:
        split = [head_partition(heads, kv_heads, rank, tp)[1::2] for rank in range(tp)]
    intermediate = getattr(model_config, "intermediate_size", None)
    if intermediate:
        divide(intermediate, tp, "the MLP's intermediate size")
    return split


def _prepare_weights(model_path: Path, model_config) -> None:
    """Convert a GGUF to its safetensors cache once, before the ranks start, so each rank reads
    just its slices instead of every rank dequantizing the whole file."""
    from callm.model_executor.loader import gguf_cache_folder, iter_weights

    if model_path.is_file() and model_path.suffix == ".gguf":
        if not (gguf_cache_folder(model_path) / "model.safetensors").is_file():
            logger.info("converting %s to its safetensors cache for the ranks", model_path.name)
            for _ in iter_weights(model_path, model_config):
                pass


def _threads_per_rank(infos: list[dict]) -> list[int]:
    """Each machine's CPUs shared among the ranks placed on it."""
    per_node = Counter(info["ip"] + "/" + info["host"] for info in infos)
    return [max(1, info["cpus"] // per_node[info["ip"] + "/" + info["host"]]) for info in infos]


class DistributedExecutor:
    backend = ""

    def __init__(self, config: EngineConfig, model_path, max_model_len: int):
        from callm.model_executor.loader import load_config

        self.config = config
        self.world_size = tp = config.tensor_parallel_size
        self.model_path = Path(model_path)
        self._error: WorkerDiedError | None = None
        self._closed = False
        self.worker_pids: list[int] = []
        model_config = load_config(self.model_path)
        heads = check_tensor_parallel(model_config, tp)
        _prepare_weights(self.model_path, model_config)
        _live.add(self)
        start = time.perf_counter()
        try:
            infos = self._start_workers()
            self.worker_pids = [info["pid"] for info in infos]
            init_method = self._init_method(infos)
            threads = _threads_per_rank(infos)
            per_block = self._call("load", config, str(self.model_path), max_model_len,
                                   init_method, threads)
            # The budget covers the whole cache; each block costs every rank its share.
            self.num_blocks = max(kv_cache_budget(config) // sum(per_block),
                                  -(-max_model_len // config.block_size))
            self._call("init_cache", self.num_blocks, config.block_size)
        except BaseException:
            self.shutdown()
            raise
        logger.info("tensor parallel over %d ranks (%s) in %.1f s: rendezvous %s, hosts %s, "
                    "threads %s, (query, kv) heads per rank %s", tp, self.backend,
                    time.perf_counter() - start, init_method,
                    sorted({info["host"] for info in infos}), threads, heads)
        if len({h for h, _ in heads}) > 1:
            logger.info("the heads do not divide evenly: ranks with more heads set the pace")

    # ----- the engine's interface -----

    def execute_model(self, seqs: list[SequenceInput]) -> torch.Tensor:
        return self._logits(self._call("execute_model", seqs)[0])

    def check_health(self) -> None:
        """Raise WorkerDiedError if a worker has died (cheap; the engine calls it when idle)."""
        if self._error is not None:
            raise WorkerDiedError(str(self._error))
        try:
            self._check_alive()
        except WorkerDiedError as e:
            self._fail(e)
            raise

    def collective_rpc(self, method: str, *args) -> list:
        """Call `RankWorker.method(*args)` on every rank; their results in rank order."""
        return self._call(method, *args)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        _live.discard(self)
        try:
            self._stop_workers(graceful=self._error is None)
        finally:
            self._release()

    # ----- shared machinery -----

    def _call(self, method: str, *args) -> list:
        if self._error is not None:
            raise WorkerDiedError(str(self._error))
        if self._closed:
            raise WorkerDiedError("the executor has been shut down")
        try:
            return self._run(method, args)
        except WorkerDiedError as e:
            self._fail(e)
            raise

    def _fail(self, error: WorkerDiedError) -> None:
        """A rank is gone: the group cannot run another step, so stop the others now (they may
        be stuck in a collective) instead of leaving them until shutdown."""
        logger.error("%s", error)
        self._error = error
        try:
            self._stop_workers(graceful=False)
        except Exception:
            logger.exception("stopping the remaining workers failed")

    def _logits(self, array) -> torch.Tensor:
        return torch.from_numpy(array)

    # backend hooks
    def _start_workers(self) -> list[dict]: ...
    def _init_method(self, infos: list[dict]) -> str: ...
    def _run(self, method: str, args: tuple) -> list: ...
    def _check_alive(self) -> None: ...
    def _stop_workers(self, graceful: bool) -> None: ...
    def _release(self) -> None: ...


# ----- mp -------------------------------------------------------------------------------------


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


class MultiprocExecutor(DistributedExecutor):
    """One `python -m callm.model_executor.tp_worker` process per rank on this machine, each
    talking to the engine over its own Unix socket pair."""

    backend = "mp"

    def _start_workers(self) -> list[dict]:
        from multiprocessing.connection import Connection

        self.procs: list[subprocess.Popen] = []
        self.conns: list[Connection] = []
        self._calls = 0  # call ids: replies to a call abandoned midway (Ctrl-C) are skipped
        for rank in range(self.world_size):
            ours, theirs = socket.socketpair()
            with theirs:
                fd = theirs.fileno()
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "callm.model_executor.tp_worker", str(fd), str(rank),
                     str(self.world_size)], pass_fds=[fd]))
            self.conns.append(Connection(ours.detach()))
        return self._run("node_info", ())

    def _init_method(self, infos: list[dict]) -> str:
        from callm.model_executor.tp_worker import free_port

        return f"tcp://127.0.0.1:{free_port()}"

    def _run(self, method: str, args: tuple) -> list:
        from multiprocessing.connection import wait

        self._calls += 1
        call = self._calls
        message = pickle.dumps((call, method, args), protocol=pickle.HIGHEST_PROTOCOL)
        for rank, conn in enumerate(self.conns):
            try:
                conn.send_bytes(message)
            except OSError:
                raise self._died(rank) from None
        results: list = [None] * self.world_size
        pending = {conn: rank for rank, conn in enumerate(self.conns)}
        while pending:
            for conn in wait(list(pending), timeout=POLL_S):
                rank = pending[conn]
                try:
                    replied_to, status, value = conn.recv()
                except (EOFError, OSError):  # its end closed: the process is gone
                    raise self._died(rank) from None
                if replied_to != call:  # the reply to an earlier, abandoned call
                    continue
                del pending[conn]
                if status == "error":
                    raise WorkerDiedError(f"tensor-parallel worker rank {rank} failed in "
                                          f"{method}: {value}")
                results[rank] = value
            for rank in pending.values():
                if self.procs[rank].poll() is not None:
                    raise self._died(rank)
        return results

    def _died(self, rank: int) -> WorkerDiedError:
        proc = self.procs[rank]
        try:
            code = proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        return WorkerDiedError(f"tensor-parallel worker rank {rank} (pid {proc.pid}) died "
                               f"({_describe_exit(code)})")

    def _check_alive(self) -> None:
        for rank, proc in enumerate(self.procs):
            if proc.poll() is not None:
                raise self._died(rank)

    def _stop_workers(self, graceful: bool) -> None:
        procs, conns = getattr(self, "procs", []), getattr(self, "conns", [])
        if graceful:
            message = pickle.dumps((0, "shutdown", ()))
            for conn in conns:
                try:
                    conn.send_bytes(message)
                except OSError:
                    pass
            deadline = time.monotonic() + SHUTDOWN_GRACE_S
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.error("tensor-parallel worker pid %d did not exit", proc.pid)
        for conn in conns:
            conn.close()
        self.conns = []


# ----- ray ------------------------------------------------------------------------------------


def _connect_ray(tp: int) -> bool:
    """Join the Ray cluster at RAY_ADDRESS, else one started with `ray start` on this machine,
    else start a local one. True when this call connected (so shutdown disconnects, and stops
    Ray if it was started here); False when the program had already initialised Ray."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("the ray executor needs Ray: pip install 'callm[ray]'") from e
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"])
        return True
    try:
        ray.init(address="auto")  # a cluster started here with `ray start`
    except ConnectionError:
        from callm.model_executor.tp_worker import available_cpus

        logger.info("starting a local Ray instance")
        ray.init(num_cpus=max(tp, available_cpus()), include_dashboard=False,
                 object_store_memory=RAY_OBJECT_STORE_BYTES)
    return True


class RayExecutor(DistributedExecutor):
    """One Ray actor per rank, placed with a placement group (PACK: as few machines as fit)."""

    backend = "ray"

    def _start_workers(self) -> list[dict]:
        self.actors: list = []
        self._pg = None
        self._owns_ray = _connect_ray(self.world_size)
        import ray
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from callm.model_executor.tp_worker import RankWorker

        self._pg = placement_group([{"CPU": 1.0}] * self.world_size, strategy="PACK")
        ready, _ = ray.wait([self._pg.ready()], timeout=RAY_PLACEMENT_TIMEOUT_S)
        if not ready:
            raise RuntimeError(
                f"the Ray cluster cannot place {self.world_size} tensor-parallel workers of 1 CPU "
                f"each within {RAY_PLACEMENT_TIMEOUT_S:.0f} s (cluster resources "
                f"{ray.cluster_resources()}, available {ray.available_resources()})")
        actor_class = ray.remote(RankWorker)
        for rank in range(self.world_size):
            strategy = PlacementGroupSchedulingStrategy(placement_group=self._pg,
                                                        placement_group_bundle_index=rank)
            self.actors.append(actor_class.options(
                num_cpus=1, scheduling_strategy=strategy).remote(rank, self.world_size))
        return self._run("node_info", ())

    def _init_method(self, infos: list[dict]) -> str:
        ip = infos[0]["ip"]
        port = self._gather([self.actors[0].free_port.remote(ip)], "free_port")[0]
        return f"tcp://{ip}:{port}"

    def _run(self, method: str, args: tuple) -> list:
        return self._gather([getattr(actor, method).remote(*args) for actor in self.actors],
                            method)

    def _gather(self, refs: list, method: str) -> list:
        """Results in rank order; the first failure raises at once (the other ranks may be stuck
        waiting for the failed one in a collective)."""
        import ray

        rank_of = {ref: rank for rank, ref in enumerate(refs)}
        results: list = [None] * len(refs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                results[rank_of[ref]] = self._get(ref, rank_of[ref], method)
        return results

    def _get(self, ref, rank: int, method: str):
        import ray

        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise WorkerDiedError(f"tensor-parallel worker rank {rank} (Ray actor, pid "
                                  f"{self._pid(rank)}) died: {_first_line(e)}") from None
        except ray.exceptions.RayError as e:
            raise WorkerDiedError(f"tensor-parallel worker rank {rank} failed in {method}: "
                                  f"{e}") from None

    def _pid(self, rank: int):
        return self.worker_pids[rank] if rank < len(self.worker_pids) else "?"

    def _logits(self, array) -> torch.Tensor:
        return torch.from_numpy(array.copy())  # Ray hands back a read-only view of its store

    def _check_alive(self) -> None:
        import ray

        refs = [actor.ping.remote() for actor in self.actors]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=RAY_PING_TIMEOUT_S)
        for ref in ready:  # an unanswered ping is a busy worker, not a dead one
            self._get(ref, refs.index(ref), "ping")

    def _stop_workers(self, graceful: bool) -> None:
        import ray

        actors, self.actors = getattr(self, "actors", []), []
        if not ray.is_initialized():  # Ray already shut down (e.g. its own atexit hook ran
            return  # first): the actors went with it; any Ray call now would start a new Ray
        if graceful and actors:
            try:
                ray.get([actor.shutdown.remote() for actor in actors], timeout=SHUTDOWN_GRACE_S)
            except Exception:  # going anyway
                pass
        for actor in actors:
            try:
                ray.kill(actor)
            except Exception:
                pass
        pg, self._pg = getattr(self, "_pg", None), None
        if pg is not None:
            from ray.util.placement_group import remove_placement_group

            try:
                remove_placement_group(pg)
            except Exception:
                pass

    def _release(self) -> None:
        if getattr(self, "_owns_ray", False):
            import ray

            ray.shutdown()
            self._owns_ray = False


def _first_line(error: BaseException) -> str:
    """Ray's actor errors are a paragraph: keep what happened and why."""
    lines = [line.strip() for line in str(error).strip().splitlines()]
    kept = [line for i, line in enumerate(lines) if i == 0 or line.startswith("The actor is dead")]
    return " ".join(kept) or type(error).__name__
