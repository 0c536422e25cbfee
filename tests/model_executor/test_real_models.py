"""Real weights: greedy tokens from callm equal transformers' on the same GGUF, in float32
(bf16 ties could flip an argmax on either side; float32 leaves no room for that)."""

import pytest
import torch

from callm import LLM, SamplingParams
from callm.model_files import load_tokenizer, resolve_model

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    ",
    "<|im_start|>user\nWhat is the weather like in Paris today?<|im_end|>\n<|im_start|>assistant\n",
]


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"])
def test_greedy_tokens_match_transformers(alias):
    from transformers import AutoModelForCausalLM

    path = resolve_model(alias)
    tokenizer = load_tokenizer(alias)
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
    llm = LLM(alias, dtype="float32", quantization="none", max_model_len=512,
              kv_cache_memory=64 * 2**20)
    ours = [o.outputs[0].token_ids for o in llm.generate(
        prompts, SamplingParams(temperature=0, max_tokens=16, ignore_eos=True), use_tqdm=False)]
    hf = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                              dtype=torch.float32).eval()
    with torch.inference_mode():
        for ids, got in zip(prompts, ours):
            out = hf.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                              min_new_tokens=16)
            assert got == out[0, len(ids):].tolist()
