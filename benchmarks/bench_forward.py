"""Forward-pass speed of callm's model executor on the embedded SmolLM2, in bf16.

Prints decode step time at batch 1/8/32 and prefill tokens/s, next to the memory-bandwidth floor
(bytes of weights / measured copy bandwidth: no decode step can beat reading every weight once)
and the same work through HF transformers in the same run.

    python benchmarks/bench_forward.py [--model ALIAS_OR_PATH] [--context 128] [--quick]
"""

import argparse
import time

import torch

from callm.model_executor.worker import SequenceInput, Worker, load_model
from callm.model_files import resolve_model


def best_of(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def copy_bandwidth() -> float:
    """Bytes/s of a large memory copy: read + write."""
    src = torch.empty(64 * 2**20, dtype=torch.uint8)
    dst = torch.empty_like(src)
    seconds = best_of(lambda: dst.copy_(src), 5)
    return 2 * src.numel() / seconds


def callm_decode(worker: Worker, batch: int, context: int, block_size: int, repeats: int) -> float:
    blocks_per_seq = -(-(context + 1) // block_size)
    seqs = [SequenceInput([7], context, list(range(i * blocks_per_seq, (i + 1) * blocks_per_seq)))
            for i in range(batch)]
    return best_of(lambda: worker.execute_model(seqs), repeats)


def callm_prefill(worker: Worker, length: int, block_size: int, repeats: int) -> float:
    seq = SequenceInput(list(range(100, 100 + length)), 0, list(range(-(-length // block_size))))
    return best_of(lambda: worker.execute_model([seq]), repeats)


@torch.inference_mode()
def hf_decode(hf, batch: int, context: int, repeats: int) -> float:
    from transformers import DynamicCache

    prompt = torch.randint(100, 1000, (batch, context))
    cache = DynamicCache()
    hf(prompt, past_key_values=cache, use_cache=True)
    nxt = torch.full((batch, 1), 7)

    def step():
        hf(nxt, past_key_values=cache, use_cache=True)
        cache.crop(-1)  # drop the new token: the context length stays fixed across repeats

    return best_of(step, repeats)


@torch.inference_mode()
def hf_prefill(hf, length: int, repeats: int) -> float:
    prompt = torch.arange(100, 100 + length).unsqueeze(0)
    return best_of(lambda: hf(prompt, use_cache=False), repeats)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers comparison")
    args = ap.parse_args()
    repeats = 2 if args.quick else 5
    batches = [1, 8] if args.quick else [1, 8, 32]
    block_size = 16
    path = resolve_model(args.model)
    model = load_model(path, torch.bfloat16, max_positions=4096)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    needed = max(batches) * -(-(args.context + 1) // block_size)
    worker = Worker(model, max(needed, -(-args.prefill // block_size)) + 1, block_size)
    bandwidth = copy_bandwidth()
    floor = weight_bytes / (bandwidth / 2)  # reading the weights once
    hf = None
    if not args.no_hf:
        from transformers import AutoModelForCausalLM

        hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                  dtype=torch.bfloat16).eval()
    print(f"model {args.model}: {weight_bytes / 2**20:.0f} MiB of bf16 weights, "
          f"{torch.get_num_threads()} threads, copy bandwidth {bandwidth / 1e9:.1f} GB/s, "
          f"weight-read floor {floor * 1e3:.1f} ms/step")
    print(f"{'work':28} {'callm':>12} {'transformers':>14} {'speedup':>8} {'floor/callm':>12}")
    for batch in batches:
        ours = callm_decode(worker, batch, args.context, block_size, repeats)
        ref = hf_decode(hf, batch, args.context, repeats) if hf else float("nan")
        print(f"{f'decode b={batch} ctx={args.context}':28} {ours * 1e3:10.1f}ms {ref * 1e3:12.1f}ms "
              f"{ref / ours:7.2f}x {floor / ours:11.2f}   ({batch / ours:.0f} tok/s)")
    ours = callm_prefill(worker, args.prefill, block_size, repeats)
    ref = hf_prefill(hf, args.prefill, repeats) if hf else float("nan")
    print(f"{f'prefill {args.prefill} tokens':28} {args.prefill / ours:8.0f}tok/s "
          f"{args.prefill / ref:10.0f}tok/s {ref / ours:7.2f}x")


if __name__ == "__main__":
    main()
