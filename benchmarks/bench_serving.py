"""Serving benchmark: concurrent streaming chat clients against the OpenAI-compatible server.

Starts `callm serve` (the embedded model unless --model is given) or uses a running server
(--url), then runs --requests streamed chat completions from --concurrency clients at once
(fixed prompts, 64 tokens each, greedy, ignore_eos) and, in the same run, the same prompts from
a single client. Prints request throughput, output tokens/s, time to first token and
inter-token latency (p50/p90/p99), and the concurrent/single-client ratio.

    python benchmarks/bench_serving.py [--model ALIAS_OR_PATH] [--port 8123] [--url URL]
                                       [--requests 32] [--concurrency 8] [--max-tokens 64]
"""

import argparse
import asyncio
import shlex
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

import httpx
import openai

PROMPTS = ["Explain what a tool call is in two sentences.", "Write a short poem about the sea.",
           "List three uses of a hash map.", "What should I pack for a weekend hiking trip?",
           "Summarise the plot of Romeo and Juliet.", "Give me a recipe for pancakes.",
           "Why is the sky blue?", "Describe how a CPU cache works."]


@contextmanager
def server(args):
    if args.url:
        yield args.url.rstrip("/")
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = args.port or s.getsockname()[1]
    cmd = [sys.executable, "-m", "callm.entrypoints.cli", "serve", *([args.model] if args.model
           else []), "--port", str(port), "--uvicorn-log-level", "warning",
           *shlex.split(args.serve_args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                sys.exit(f"callm serve exited with {proc.returncode}:\n{proc.stderr.read()}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        print(f"server ready in {time.monotonic() - start:.1f} s: {' '.join(cmd[3:])}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def one_request(client, model, prompt, max_tokens):
    """(ttft, inter-token gaps, output tokens) of one streamed chat completion."""
    start = time.perf_counter()
    stream = await client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
        temperature=0, stream=True, stream_options={"include_usage": True},
        extra_body={"ignore_eos": True})
    times, tokens = [], 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            times.append(time.perf_counter())
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    gaps = [b - a for a, b in zip(times, times[1:])]
    return times[0] - start, gaps, tokens


async def run(url, key, model, requests, concurrency, max_tokens):
    client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=600)
    limit = asyncio.Semaphore(concurrency)

    async def limited(i):
        async with limit:
            return await one_request(client, model, PROMPTS[i % len(PROMPTS)], max_tokens)

    start = time.perf_counter()
    results = await asyncio.gather(*[limited(i) for i in range(requests)])
    elapsed = time.perf_counter() - start
    await client.close()
    return elapsed, results


def pct(values, q):
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(label, elapsed, results):
    ttft = [r[0] for r in results]
    itl = [g for r in results for g in r[1]]
    tokens = sum(r[2] for r in results)
    print(f"{label}: {len(results)} requests in {elapsed:.2f} s: "
          f"{len(results) / elapsed:.2f} req/s, {tokens / elapsed:.1f} output tok/s")
    for name, values in (("TTFT", ttft), ("ITL ", itl)):
        print(f"  {name} ms  p50 {pct(values, 50) * 1e3:8.1f}  p90 {pct(values, 90) * 1e3:8.1f}"
              f"  p99 {pct(values, 99) * 1e3:8.1f}")
    return tokens / elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model to serve (default: the embedded one)")
    p.add_argument("--port", type=int, help="port for the started server (default: a free one)")
    p.add_argument("--url", help="use a running server instead, e.g. http://127.0.0.1:8000")
    p.add_argument("--serve-args", default="", help="extra `callm serve` flags, quoted")
    p.add_argument("--api-key", default="bench", help="key sent to the server")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--baseline-requests", type=int, default=4,
                   help="requests for the single-client baseline")
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    with server(args) as url:
        key = args.api_key
        model = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"},
                          timeout=10).json()["data"][0]["id"]
        asyncio.run(run(url, key, model, 1, 1, 4))  # warm-up
        single = asyncio.run(run(url, key, model, args.baseline_requests, 1, args.max_tokens))
        many = asyncio.run(run(url, key, model, args.requests, args.concurrency,
                               args.max_tokens))
    print(f"model {model}, {args.max_tokens} output tokens per request, greedy, ignore_eos")
    base = report("single client (baseline)", *single)
    tput = report(f"{args.concurrency} concurrent clients", *many)
    print(f"output tok/s, {args.concurrency} clients vs 1: {tput / base:.2f}x")


if __name__ == "__main__":
    main()
