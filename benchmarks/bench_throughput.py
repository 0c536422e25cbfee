"""Offline throughput: chat requests sharing a tool-laden system prompt, through callm and through
HF transformers `generate` (batched, same model, dtype and token counts) in one run.

Prints output tokens/s for both, their ratio, and callm's prefix-cache hit rate; callm runs once
per `--quantizations` entry (default none and the GGUF's own class through auto; transformers
computes with the dequantized weights either way).

    python benchmarks/bench_throughput.py [--requests 64] [--hf-batch 16] [--quick]
        [--quantizations none,auto,int8,int4]
"""

import argparse
import random
import time

import torch

from callm import LLM, SamplingParams
from callm.entrypoints.chat_utils import default_chat_template, render_chat
from callm.model_files import resolve_model

TOOLS = [{"type": "function", "function": {
    "name": name, "description": description,
    "parameters": {"type": "object", "properties": {
        arg: {"type": "string", "description": f"The {arg} to use"} for arg in args},
        "required": list(args[:1])}}}
    for name, description, args in [
        ("get_current_weather", "Current weather for a city", ("location", "unit")),
        ("search_flights", "Search flights between two airports", ("origin", "destination",
                                                                   "date", "cabin")),
        ("book_restaurant", "Reserve a table", ("restaurant", "time", "party_size")),
        ("convert_currency", "Convert an amount between currencies", ("amount", "from", "to")),
        ("send_email", "Send an email", ("to", "subject", "body")),
    ]]
SYSTEM = ("You are a travel assistant. Use the tools when they help; answer briefly otherwise. "
          "Always confirm dates and prices with the user before booking anything.")
QUESTIONS = ["What's the weather in {}?", "Find me a flight from {} to Lisbon next Friday.",
             "Book a table for four in {} tonight.", "How much is 120 euros in {} money?",
             "Tell me something interesting about {}."]
CITIES = ["Paris", "Tokyo", "Nairobi", "Lima", "Oslo", "Hanoi", "Quebec", "Cairo"]


def make_requests(count: int, seed: int = 0):
    rng = random.Random(seed)
    conversations = [[{"role": "system", "content": SYSTEM},
                      {"role": "user", "content": rng.choice(QUESTIONS).format(rng.choice(CITIES))}]
                     for _ in range(count)]
    lengths = [rng.randint(64, 128) for _ in range(count)]
    return conversations, lengths


def run_callm(llm: LLM, conversations, lengths) -> tuple[float, int]:
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in lengths]
    start = time.perf_counter()
    outputs = llm.chat(conversations, params, tools=TOOLS, use_tqdm=False)
    seconds = time.perf_counter() - start
    return seconds, sum(len(o.outputs[0].token_ids) for o in outputs)


@torch.inference_mode()
def run_hf(model, tokenizer, prompts: list[str], lengths, batch: int) -> tuple[float, int]:
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    order = sorted(range(len(prompts)), key=lambda i: lengths[i])  # similar lengths together
    useful = 0
    start = time.perf_counter()
    for k in range(0, len(order), batch):
        chunk = order[k:k + batch]
        inputs = tokenizer([prompts[i] for i in chunk], return_tensors="pt", padding=True,
                           add_special_tokens=False)
        steps = max(lengths[i] for i in chunk)
        model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
        useful += sum(lengths[i] for i in chunk)
    return time.perf_counter() - start, useful


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--hf-batch", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--quick", action="store_true", help="16 requests")
    ap.add_argument("--quantizations", default="none,auto")
    ap.add_argument("--no-hf", action="store_true")
    args = ap.parse_args()
    count = 16 if args.quick else args.requests
    conversations, lengths = make_requests(count)
    rates = {}
    for quantization in args.quantizations.split(","):
        llm = LLM(args.model, dtype=args.dtype, quantization=quantization, max_model_len=2048)
        template = default_chat_template(llm.tokenizer)
        prompts = [render_chat(llm.tokenizer, c, tools=TOOLS, chat_template=template)
                   for c in conversations]
        prompt_tokens = [len(llm.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
        run_callm(llm, conversations[:2], [8, 8])  # warm up (and fill the prefix cache a little)
        seconds, tokens = run_callm(llm, conversations, lengths)
        hits = llm.engine.block_manager.prefix_hit_rate
        if not rates:
            print(f"{count} chat requests, prompts {min(prompt_tokens)}-{max(prompt_tokens)} "
                  f"tokens (shared system prompt with {len(TOOLS)} tools), outputs "
                  f"{min(lengths)}-{max(lengths)} tokens, {args.dtype}, "
                  f"{torch.get_num_threads()} threads")
        name = f"callm {quantization}" + (f"->{llm.engine.config.quantization}"
                                          if quantization == "auto" else "")
        rates[name] = tokens / seconds
        print(f"{name:<20} {tokens / seconds:8.1f} output tok/s  ({tokens} tokens in "
              f"{seconds:.1f} s, prefix-cache hit rate {hits:.0%})")
        tokenizer = llm.tokenizer
        del llm
    if args.no_hf:
        return
    from transformers import AutoModelForCausalLM

    path = resolve_model(args.model)
    dtype = torch.bfloat16 if args.dtype == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                 dtype=dtype).eval()
    run_hf(model, tokenizer, prompts[:2], [8, 8], 2)
    hf_seconds, hf_tokens = run_hf(model, tokenizer, prompts, lengths, args.hf_batch)
    print(f"{'transformers':<20} {hf_tokens / hf_seconds:8.1f} output tok/s  ({hf_tokens} "
          f"tokens in {hf_seconds:.1f} s, generate() in batches of {args.hf_batch})")
    for name, rate in rates.items():
        print(f"ratio {name:<16}{rate / (hf_tokens / hf_seconds):8.2f}x  (goal >= 4x)")


if __name__ == "__main__":
    main()
