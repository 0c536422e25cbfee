"""Tensor parallelism on this machine: per-step time at tp=1 and tp=2, and what the all-reduces
cost, on the embedded SmolLM2 in bf16.

Each executor runs the same steps straight through `execute_model` (no scheduler or sampler):
decode at batch 1 and 8 over a 128-token context, and a 512-token prefill. At tp=2 it also
reports
- the all-reduce share: seconds rank 0 spent inside all-reduce/all-gather calls during the
  step (this includes waiting for the slower rank) over the step time;
- the all-reduce floor: the same number of same-size all-reduces run back to back with the
  ranks in step (pure communication; best of 3 runs of 20), over the step time;
- the dispatch round trip: engine -> every rank -> engine with an empty call.

    python benchmarks/bench_tp.py [--model ALIAS_OR_PATH] [--ray] [--quick]
"""

import argparse
import os
import statistics
import time

import torch

from callm.config import EngineConfig
from callm.model_executor.executor import make_executor
from callm.model_executor.loader import load_config
from callm.model_executor.worker import SequenceInput
from callm.model_files import resolve_model

BLOCK = 16


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def workloads(context: int, prefill: int) -> dict[str, tuple[list[SequenceInput], int]]:
    """name -> (the step's sequences, tokens per all-reduce)"""
    per_seq = -(-(context + 1) // BLOCK)

    def decode(batch):
        return [SequenceInput([7], context, list(range(i * per_seq, (i + 1) * per_seq)))
                for i in range(batch)]

    return {f"decode b=1 ctx={context}": (decode(1), 1),
            f"decode b=8 ctx={context}": (decode(8), 8),
            f"prefill {prefill} tokens": ([SequenceInput(list(range(100, 100 + prefill)), 0,
                                                         list(range(-(-prefill // BLOCK))))],
                                          prefill)}


def run(model: str, tp: int, backend: str, work: dict, repeats: int, hidden: int,
        layers: int) -> dict:
    config = EngineConfig(model=model, dtype="bfloat16", kv_cache_memory=64 * 2**20,
                          tensor_parallel_size=tp, distributed_executor_backend=backend)
    path = resolve_model(model)
    start = time.perf_counter()
    executor = make_executor(config, path, 2048)
    result = {"start_s": time.perf_counter() - start}
    try:
        for name, (seqs, tokens) in work.items():
            step = median_time(lambda: executor.execute_model(seqs), repeats)
            row = {"step_s": step}
            if tp > 1:
                executor.collective_rpc("comm_timing", True)
                for _ in range(repeats):
                    executor.execute_model(seqs)
                stats = executor.collective_rpc("comm_stats")
                executor.collective_rpc("comm_timing", False)
                row["comm_s"] = [(s["all_reduce_s"] + s["all_gather_s"]) / repeats
                                 for s in stats]
                row["calls"] = (stats[0]["all_reduce_calls"] + stats[0]["all_gather_calls"]) \
                    // repeats
                per_call = min(executor.collective_rpc("bench_all_reduce", tokens * hidden,
                                                       "bfloat16", 20)[0] for _ in range(3))
                row["floor_s"] = per_call * (2 * layers + 1)  # o_proj, down_proj; embedding
            result[name] = row
        if tp > 1:
            result["dispatch_s"] = median_time(lambda: executor.collective_rpc("ping"), 50)
    finally:
        executor.shutdown()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--ray", action="store_true", help="also run tp=2 on Ray actors")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    repeats = 3 if args.quick else 10
    model_config = load_config(resolve_model(args.model))
    hidden, layers = model_config.hidden_size, model_config.num_hidden_layers
    work = workloads(args.context, args.prefill)
    runs = {"tp=1 (uni)": run(args.model, 1, "uni", work, repeats, hidden, layers),
            "tp=2 (mp)": run(args.model, 2, "mp", work, repeats, hidden, layers)}
    if args.ray:
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)
        try:
            runs["tp=2 (ray)"] = run(args.model, 2, "ray", work, repeats, hidden, layers)
        finally:
            ray.shutdown()

    print(f"model {args.model} bf16, {layers} layers, hidden {hidden}; "
          f"{torch.get_num_threads()} CPU threads in all (tp=2: one per rank); "
          f"load average {os.getloadavg()[0]:.2f}")
    print("start-up: " + ", ".join(f"{k} {v['start_s']:.1f} s" for k, v in runs.items()))
    for key, value in runs.items():
        if "dispatch_s" in value:
            print(f"dispatch round trip {key}: {value['dispatch_s'] * 1e6:.0f} us")
    base = runs["tp=1 (uni)"]
    print(f"\n{'work':24} {'executor':12} {'step':>9} {'vs tp=1':>8} {'collectives':>12} "
          f"{'all-reduce share r0/r1':>23} {'all-reduce floor':>17}")
    for name in work:
        for key, value in runs.items():
            row = value[name]
            line = (f"{name:24} {key:12} {row['step_s'] * 1e3:7.1f}ms "
                    f"{base[name]['step_s'] / row['step_s']:7.2f}x")
            if "comm_s" in row:
                shares = "/".join(f"{c / row['step_s']:.0%}" for c in row["comm_s"])
                line += (f" {row['calls']:12d} {shares:>23} "
                         f"{row['floor_s'] * 1e3:8.1f}ms {row['floor_s'] / row['step_s']:4.0%}")
            print(line)


if __name__ == "__main__":
    main()
