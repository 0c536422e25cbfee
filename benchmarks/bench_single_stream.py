"""One request at a time on the embedded model: what a single user sees.

For each dtype (default: auto, bfloat16 and float32, in the same run):
- decode: 128 new tokens after a short chat prompt -> decode tokens/s;
- prefill: a ~650-token prompt carrying four tool definitions -> TTFT and prefill tokens/s;
- per-step overhead: a decode step's wall time minus its forward pass (scheduler, metadata,
  sampler, detokenizer, outputs), median over the decode steps.
With `--async`, the decode also runs through AsyncLLMEngine (the server's path: engine thread,
one asyncio stream) to show the streaming cost.

llama.cpp runs side by side (same GGUF file, `--llama-threads`, default 2) when `llama_cpp` is
importable; it is an optional benchmark dependency, built from source:

    CMAKE_ARGS="-DGGML_NATIVE=ON" pip install -c constraints.txt llama-cpp-python==0.3.36

    python benchmarks/bench_single_stream.py [--model ALIAS_OR_PATH] [--dtypes auto,float32]
        [--num-threads N] [--max-tokens 128] [--repeats 3] [--async] [--no-llama] [--profile]
"""

import argparse
import asyncio
import cProfile
import io
import json
import logging
import pstats
import statistics
import time

import torch

from callm.engine.llm_engine import LLMEngine
from callm.engine.sampling_params import SamplingParams
from callm.entrypoints.chat_utils import default_chat_template, render_chat
from callm.model_files import resolve_model

SHORT = [{"role": "user", "content": "Write a short story about a robot learning to paint."}]


def _tool(name: str, description: str, props: dict) -> dict:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": props, "required": list(props)}}}


TOOLS = [
    _tool("get_weather", "Get the current weather and a three-day forecast for a city.", {
        "city": {"type": "string", "description": "City name, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}),
    _tool("search_flights", "Search direct and one-stop flights between two airports.", {
        "origin": {"type": "string", "description": "IATA code of the departure airport"},
        "destination": {"type": "string", "description": "IATA code of the arrival airport"},
        "date": {"type": "string", "description": "Departure date, YYYY-MM-DD"},
        "passengers": {"type": "integer", "minimum": 1, "maximum": 9}}),
    _tool("book_restaurant", "Book a table at a restaurant, returning a confirmation code.", {
        "restaurant": {"type": "string"}, "time": {"type": "string", "description": "HH:MM"},
        "party_size": {"type": "integer"}, "notes": {"type": "string"}}),
    _tool("convert_currency", "Convert an amount between two currencies at today's rate.", {
        "amount": {"type": "number"}, "from_currency": {"type": "string"},
        "to_currency": {"type": "string"}}),
]
LONG = [{"role": "system", "content": "You are a travel and productivity assistant. Use the "
                                      "tools when they help; ask before sending anything."},
        {"role": "user", "content": "I land in Lisbon on Friday. What will the weather be, can "
                                    "you find me a flight back to Paris on Sunday, and book "
                                    "dinner for two at 20:00 somewhere near the river?"}]


def prompts(engine: LLMEngine) -> tuple[list[int], list[int]]:
    template = default_chat_template(engine.tokenizer, engine.config.model)
    tok = engine.tokenizer
    short = tok.encode(render_chat(tok, SHORT, chat_template=template), add_special_tokens=False)
    long = tok.encode(render_chat(tok, LONG, TOOLS, chat_template=template),
                      add_special_tokens=False)
    return short, long


class ForwardTimer:
    """Wraps the executor's execute_model and records each call's seconds."""

    def __init__(self, executor):
        self.inner = executor.execute_model
        self.times: list[float] = []
        executor.execute_model = self

    def __call__(self, seqs):
        start = time.perf_counter()
        out = self.inner(seqs)
        self.times.append(time.perf_counter() - start)
        return out


def run_one(engine: LLMEngine, timer: ForwardTimer, prompt: list[int], max_tokens: int,
            rid: str) -> dict:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
    timer.times.clear()
    step_times, token_times = [], []
    start = time.perf_counter()
    engine.add_request(rid, prompt, params)
    while engine.has_unfinished_requests():
        t0 = time.perf_counter()
        outs = engine.step()
        t1 = time.perf_counter()
        step_times.append(t1 - t0)
        if outs:
            token_times.append(t1)
    ttft = token_times[0] - start
    decode_s = token_times[-1] - token_times[0]
    # steps after the prefill step are batch-1 decode steps
    overhead = [s - f for s, f in zip(step_times[1:], timer.times[1:])]
    return {"prompt_tokens": len(prompt), "ttft_s": ttft,
            "prefill_tok_s": len(prompt) / ttft,
            "decode_tok_s": (len(token_times) - 1) / decode_s if decode_s > 0 else float("nan"),
            "step_ms": 1e3 * statistics.median(step_times[1:]) if overhead else float("nan"),
            "forward_ms": 1e3 * statistics.median(timer.times[1:]) if overhead else float("nan"),
            "overhead_ms": 1e3 * statistics.median(overhead) if overhead else float("nan")}


def run_async(engine: LLMEngine, prompt: list[int], max_tokens: int) -> float:
    """Decode tokens/s as a streaming client of AsyncLLMEngine sees them."""
    from callm.engine.async_engine import AsyncLLMEngine

    async_engine = AsyncLLMEngine(engine)

    async def consume():
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0, ignore_eos=True)
        times = []
        async for _ in async_engine.generate(prompt, params, "async-0"):
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0])

    try:
        return asyncio.run(consume())
    finally:
        async_engine._stopped = True  # stop the loop thread; keep the engine for the caller
        async_engine._wakeup.set()
        async_engine._thread.join(timeout=30)


def best(runs: list[dict]) -> dict:
    """Per metric, the best of the repeats (least disturbed by the rest of the machine)."""
    higher = ("prefill_tok_s", "decode_tok_s")
    return {k: (max if k in higher else min)(r[k] for r in runs) for k in runs[0]}


def bench_callm(args, dtype: str) -> dict:
    engine = LLMEngine(model=args.model, dtype=dtype, num_threads=args.num_threads,
                       enable_prefix_caching=False, kv_cache_memory=256 * 2**20)
    timer = ForwardTimer(engine.executor)
    short, long = prompts(engine)
    run_one(engine, timer, short, 8, "warmup")
    profiler = cProfile.Profile() if args.profile else None
    decode = []
    for i in range(args.repeats):
        if profiler and i == args.repeats - 1:
            profiler.enable()
        decode.append(run_one(engine, timer, short, args.max_tokens, f"d{i}"))
        if profiler and i == args.repeats - 1:
            profiler.disable()
    prefill = [run_one(engine, timer, long, 1, f"p{i}") for i in range(args.repeats)]
    result = {"dtype": engine.config.dtype, "threads": torch.get_num_threads(),
              "decode": best(decode), "prefill": best(prefill)}
    if args.use_async:
        result["async_decode_tok_s"] = max(run_async(engine, short, args.max_tokens)
                                           for _ in range(args.repeats))
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        result["profile"] = out.getvalue()
    engine.shutdown()
    return result


def bench_llama_cpp(args, short_text: str, long_text: str) -> dict | None:
    try:
        import llama_cpp
    except ImportError:
        print("llama.cpp: not installed; to compare, install the optional peer (builds from "
              "source, ~5 min):\n  CMAKE_ARGS=\"-DGGML_NATIVE=ON\" pip install -c constraints.txt "
              "llama-cpp-python==0.3.36")
        return None
    path = str(resolve_model(args.model))
    llm = llama_cpp.Llama(model_path=path, n_threads=args.llama_threads,
                          n_threads_batch=args.llama_threads, n_ctx=2048, n_batch=1024,
                          verbose=False)
    short = llm.tokenize(short_text.encode(), add_bos=False, special=True)
    long = llm.tokenize(long_text.encode(), add_bos=False, special=True)

    def decode_run() -> float:
        llm.reset()
        llm.eval(short)
        token, times = None, []
        for _ in range(args.max_tokens):
            token = int(llm.scores[llm.n_tokens - 1].argmax())  # greedy, EOS allowed through
            llm.eval([token])
            times.append(time.perf_counter())
        return (len(times) - 1) / (times[-1] - times[0])

    def prefill_run() -> float:
        llm.reset()
        start = time.perf_counter()
        llm.eval(long)
        return time.perf_counter() - start

    decode_run()
    decode = max(decode_run() for _ in range(args.repeats))
    ttft = min(prefill_run() for _ in range(args.repeats))
    return {"version": llama_cpp.__version__, "threads": args.llama_threads,
            "decode_tok_s": decode, "ttft_s": ttft, "prefill_tok_s": len(long) / ttft,
            "prompt_tokens": len(long)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--dtypes", default="auto,bfloat16,float32")
    p.add_argument("--num-threads", type=int, help="callm threads (default: every core)")
    p.add_argument("--llama-threads", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--async", dest="use_async", action="store_true",
                   help="also decode through AsyncLLMEngine (the server's streaming path)")
    p.add_argument("--no-llama", action="store_true")
    p.add_argument("--profile", action="store_true", help="cProfile the last decode run")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}")

    results = {"callm": [bench_callm(args, d) for d in args.dtypes.split(",")]}
    print(f"\n{'engine':<22}{'thr':>4}{'decode tok/s':>14}{'step ms':>9}{'fwd ms':>8}"
          f"{'other ms':>10}{'TTFT ms':>9}{'prefill tok/s':>15}")
    for requested, r in zip(args.dtypes.split(","), results["callm"]):
        d, f = r["decode"], r["prefill"]
        name = f"callm {requested}" + (f"->{r['dtype']}" if requested == "auto" else "")
        print(f"{name:<22}{r['threads']:>4}{d['decode_tok_s']:>14.1f}{d['step_ms']:>9.2f}"
              f"{d['forward_ms']:>8.2f}{d['overhead_ms']:>10.2f}{1e3 * f['ttft_s']:>9.1f}"
              f"{f['prefill_tok_s']:>15.1f}")
        if "async_decode_tok_s" in r:
            print(f"{'  via AsyncLLMEngine':<26}{r['async_decode_tok_s']:>14.1f}")
    print(f"(prefill prompt: {results['callm'][0]['prefill']['prompt_tokens']} tokens with "
          f"{len(TOOLS)} tools; decode: {args.max_tokens} tokens after a "
          f"{results['callm'][0]['decode']['prompt_tokens']}-token prompt; best of "
          f"{args.repeats})")
    if not args.no_llama:
        from callm.model_files import load_tokenizer  # the same prompts, as text

        tok = load_tokenizer(args.model)
        template = default_chat_template(tok, args.model)
        peer = bench_llama_cpp(args, render_chat(tok, SHORT, chat_template=template),
                               render_chat(tok, LONG, TOOLS, chat_template=template))
        if peer:
            results["llama.cpp"] = peer
            print(f"{'llama.cpp ' + peer['version']:<22}{peer['threads']:>4}"
                  f"{peer['decode_tok_s']:>14.1f}{'':>27}{1e3 * peer['ttft_s']:>9.1f}"
                  f"{peer['prefill_tok_s']:>15.1f}   ({peer['prompt_tokens']} prompt tokens)")
    for r in results["callm"]:
        if "profile" in r:
            print(f"\n--- cProfile, decode, dtype {r['dtype']} ---\n{r.pop('profile')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
