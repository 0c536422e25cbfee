"""Tensor parallelism over 2 ranks on this CPU, with the `mp` and `ray` executors: greedy tokens
identical to one rank (float32) on tiny random Llama/Qwen2 models — GQA split evenly, one kv
head replicated on both ranks, heads that split unevenly — and on SmolLM2; a model that cannot
be split fails before any process starts; each rank reads only its slices of the checkpoint; a
killed worker surfaces as WorkerDiedError within seconds; shutdown leaves no worker processes.
Ray is started once for this module and shut down at its end."""

import os
import signal
import time

import psutil
import pytest
import torch

from callm import LLM, SamplingParams
from callm.model_executor.executor import WorkerDiedError, make_executor
from callm.model_executor.loader import WeightSlice
from callm.model_executor.parallel_state import head_partition, init_tensor_parallel
from callm.model_executor.worker import load_model

pytestmark = pytest.mark.timeout(300)

PROMPTS = ["Hello, my name is", "The capital of France is Paris, and the capital of Italy is",
           "def fibonacci(n):", "1, 2, 3, 4,", "Tool calling lets a model"]
GREEDY = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
# a small token budget: prompts prefill in chunks while others decode, in one batch
# (and unquantized: the embedded GGUF would otherwise be int4 wherever that decodes faster)
ENGINE = dict(dtype="float32", quantization="none", kv_cache_memory=8 * 2**20,
              max_model_len=256, max_num_batched_tokens=16)

# name -> (architecture, config overrides)
TINY = {
    "llama": ("llama", {}),  # 4 query heads, 2 kv heads: one group per rank
    "qwen2-1kv": ("qwen2", {"num_key_value_heads": 1}),  # the kv head replicated on both ranks
    "llama-uneven": ("llama", {"hidden_size": 96, "num_attention_heads": 6,
                               "num_key_value_heads": 3}),  # 3 groups over 2 ranks: 4 + 2 heads
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tiny_llama_dir):
    from tiny_models import save_tiny_model

    folders = {"llama": tiny_llama_dir}
    for name, (arch, overrides) in TINY.items():
        if name not in folders:
            folders[name] = save_tiny_model(tmp_path_factory.mktemp(name), arch, **overrides)
    return {name: str(folder) for name, folder in folders.items()}


def generate(model: str, prompts=PROMPTS, **engine_args) -> list[list[int]]:
    with LLM(model, **{**ENGINE, **engine_args}) as llm:
        outputs = llm.generate(prompts, GREEDY, use_tqdm=False)
        pids = list(getattr(llm.engine.executor, "worker_pids", []))
    assert_gone(pids)
    return [o.outputs[0].token_ids for o in outputs]


def assert_gone(pids: list[int], timeout: float = 15.0) -> None:
    """Every pid has exited (Ray reaps killed actors asynchronously)."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        time.sleep(0.1)
    assert not alive, f"worker processes still running after shutdown: {alive}"


def mp_workers() -> list[int]:
    """This process's `mp` worker processes."""
    workers = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "callm.model_executor.tp_worker" in " ".join(child.cmdline()):
                workers.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return workers


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.fixture(scope="module")
def reference(tiny):
    """Greedy tokens at one rank, computed once per model."""
    cache = {}

    def get(name: str) -> list[list[int]]:
        if name not in cache:
            cache[name] = generate(tiny[name])
        return cache[name]

    return get


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


# ----- the split itself --------------------------------------------------------------------


@pytest.mark.parametrize("heads, kv_heads, tp, expected", [
    (4, 2, 2, [(0, 2, 0, 1), (2, 2, 1, 1)]),
    (4, 1, 2, [(0, 2, 0, 1), (2, 2, 0, 1)]),  # one kv head, replicated
    (9, 3, 2, [(0, 6, 0, 2), (6, 3, 2, 1)]),  # SmolLM2: groups of 3 query heads, 2 + 1 groups
    (14, 2, 4, None),  # Qwen2.5-0.5B at 4 ranks: 7 query heads per kv head over 2 replicas
    (4, 2, 3, None),
    (8, 8, 1, [(0, 8, 0, 8)]),
])
def test_head_partition(heads, kv_heads, tp, expected):
    if expected is None:
        with pytest.raises(ValueError, match=rf"cannot split {heads} attention heads"):
            head_partition(heads, kv_heads, 0, tp)
    else:
        assert [head_partition(heads, kv_heads, r, tp) for r in range(tp)] == expected


def test_unsplittable_model_fails_before_starting_workers(tiny):
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"cannot split 4 attention heads \(2 key/value heads\) "
                                         r"over 3 tensor-parallel ranks.*"
                                         r"sizes these heads allow: 1, 2, 4$"):
        LLM(tiny["llama"], **ENGINE, tensor_parallel_size=3, distributed_executor_backend="mp")
    assert time.monotonic() - start < 10
    assert not mp_workers()


@pytest.mark.parametrize("args, message", [
    (dict(tensor_parallel_size=2, distributed_executor_backend="uni"), "uni executor runs"),
    (dict(tensor_parallel_size=2, distributed_executor_backend="dask"), "unknown distributed"),
    (dict(tensor_parallel_size=0), "positive integer"),
])
def test_bad_executor_arguments(tiny_llama_dir, args, message):
    from callm.config import EngineConfig

    with pytest.raises(ValueError, match=message):
        make_executor(EngineConfig(model=str(tiny_llama_dir), **args), tiny_llama_dir, 256)


def test_rank_reads_only_its_slices(tiny, monkeypatch):
    """Rank 1 of 2 builds its shard from lazy checkpoint slices: it reads about half the
    checkpoint (norms are whole on every rank), and its weights are the right slices."""
    read = []
    original = WeightSlice.__getitem__

    def counting(self, index):
        tensor = original(self, index)
        read.append(tensor.numel())
        return tensor

    monkeypatch.setattr(WeightSlice, "__getitem__", counting)
    path = tiny["llama-uneven"]
    full = load_model(path, torch.float32)
    init_tensor_parallel(1, 2)
    try:
        shard = load_model(path, torch.float32)
    finally:
        init_tensor_parallel(0, 1)
    checkpoint = sum(p.numel() for p in full.parameters())  # tied: the embedding counted once
    assert 0.3 * checkpoint < sum(read) < 0.55 * checkpoint
    attn, full_attn = shard.model.layers[1].self_attn, full.model.layers[1].self_attn
    # 3 kv groups of 2 query heads (16 wide) over 2 ranks: rank 1 has group 2 = query heads 4-5
    assert (attn.qkv_proj.num_heads, attn.qkv_proj.num_kv_heads) == (2, 1)
    q_rows = full_attn.qkv_proj.weight[4 * 16:6 * 16]
    k_rows = full_attn.qkv_proj.weight[96 + 2 * 16:96 + 3 * 16]
    assert torch.equal(attn.qkv_proj.weight[:32], q_rows)
    assert torch.equal(attn.qkv_proj.weight[32:48], k_rows)
    assert torch.equal(attn.o_proj.weight, full_attn.o_proj.weight[:, 64:96])
    mlp, full_mlp = shard.model.layers[1].mlp, full.model.layers[1].mlp
    assert torch.equal(mlp.down_proj.weight, full_mlp.down_proj.weight[:, 64:])
    vocab = shard.model.embed_tokens
    assert torch.equal(vocab.weight[:10], full.model.embed_tokens.weight[vocab.start:][:10])


# ----- greedy parity -------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TINY))
def test_mp_matches_one_rank(tiny, reference, name):
    assert generate(tiny[name], tensor_parallel_size=2,
                    distributed_executor_backend="mp") == reference(name)


@pytest.mark.parametrize("name", ["llama", "qwen2-1kv"])
def test_ray_matches_one_rank(tiny, reference, ray_session, name):
    assert generate(tiny[name], tensor_parallel_size=2,
                    distributed_executor_backend="ray") == reference(name)


@pytest.fixture(scope="module")
def smollm2_reference():
    return generate("smollm2-135m-instruct", PROMPTS[:3])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["mp", "ray"])
def test_smollm2_matches_one_rank(smollm2_reference, backend, request):
    """The embedded SmolLM2 (9 heads, 3 kv heads: 6 + 3 per rank) in float32."""
    if backend == "ray":
        request.getfixturevalue("ray_session")
    assert generate("smollm2-135m-instruct", PROMPTS[:3], tensor_parallel_size=2,
                    distributed_executor_backend=backend) == smollm2_reference


# ----- faults ----------------------------------------------------------------------------------


def _assert_dies_fast(llm: LLM, match: str) -> None:
    start = time.monotonic()
    with pytest.raises(WorkerDiedError, match=match):
        llm.generate(PROMPTS, GREEDY, use_tqdm=False)
    assert time.monotonic() - start < 10
    with pytest.raises(WorkerDiedError):  # and from then on, at once
        llm.engine.check_health()


def test_mp_killed_worker_is_detected(tiny):
    llm = LLM(tiny["llama"], **ENGINE, tensor_parallel_size=2, distributed_executor_backend="mp")
    try:
        pids = llm.engine.executor.worker_pids
        assert sorted(pids) == sorted(mp_workers())
        llm.engine.check_health()
        os.kill(pids[1], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while True:  # the idle check notices too, without a step
            try:
                llm.engine.check_health()
            except WorkerDiedError as e:
                assert "rank 1" in str(e) and "SIGKILL" in str(e)
                break
            assert time.monotonic() < deadline, "the dead worker was not noticed"
            time.sleep(0.05)
        _assert_dies_fast(llm, r"rank 1 \(pid \d+\) died \(killed by SIGKILL\)")
    finally:
        llm.shutdown()
    assert_gone(pids)
    assert not mp_workers()


def test_mp_worker_killed_mid_generation(tiny):
    """Rank 0 is waiting for rank 1 inside an all-reduce when rank 1 dies."""
    import threading

    llm = LLM(tiny["llama"], **ENGINE, tensor_parallel_size=2, distributed_executor_backend="mp")
    try:
        pids = llm.engine.executor.worker_pids
        threading.Timer(0.5, os.kill, (pids[1], signal.SIGKILL)).start()
        long = SamplingParams(temperature=0, max_tokens=200, ignore_eos=True)
        start = time.monotonic()
        with pytest.raises(WorkerDiedError, match="rank 1"):
            llm.generate(PROMPTS, long, use_tqdm=False)
        assert time.monotonic() - start < 10
    finally:
        llm.shutdown()
    assert_gone(pids)


def test_ray_killed_worker_is_detected(tiny, ray_session):
    llm = LLM(tiny["llama"], **ENGINE, tensor_parallel_size=2, distributed_executor_backend="ray")
    try:
        pids = llm.engine.executor.worker_pids
        assert llm.generate(PROMPTS[:1], GREEDY, use_tqdm=False)[0].finished
        os.kill(pids[0], signal.SIGKILL)  # the actor's process crashes
        _assert_dies_fast(llm, r"rank 0 \(Ray actor, pid \d+\) died")
    finally:
        llm.shutdown()
    assert_gone(pids)
    assert ray_session.is_initialized()  # a Ray the program started is left running
