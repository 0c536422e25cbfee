"""callm's models against transformers on tiny random-weight models: same logits (fp32
tolerance) for a prefill, for step-by-step decode over the paged cache, and for a batch mixing a
chunked prefill, a fresh prefill and decodes — at block sizes 1 and 16, with block tables out of
order."""

import random

import pytest
import torch
from transformers import (AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config,
                          Qwen3Config)

from callm.model_executor.models.registry import model_class
from callm.model_executor.worker import SequenceInput, Worker, build_batch

SMALL = dict(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
             max_position_embeddings=128, rms_norm_eps=1e-5)

CONFIGS = {
    "llama-gqa": LlamaConfig(**SMALL, num_attention_heads=6, num_key_value_heads=2),
    "llama-tied-rope-scaled": LlamaConfig(
        **SMALL, num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64}),
    "qwen2-bias": Qwen2Config(**SMALL, num_attention_heads=6, num_key_value_heads=3),
    "qwen3-qknorm-mqa": Qwen3Config(**SMALL, num_attention_heads=3, num_key_value_heads=1,
                                    head_dim=16),
    "mistral": MistralConfig(**SMALL, num_attention_heads=4, num_key_value_heads=2,
                             sliding_window=None),
}


def _pair(name: str):
    """A random HF model (weights scaled up so differences show) and callm's copy of it."""
    config = CONFIGS[name]
    config.architectures = [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
                             "qwen3": "Qwen3ForCausalLM", "mistral": "MistralForCausalLM"}[
        name.split("-")[0]]]
    torch.manual_seed(0)
    hf = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0, 0.15)
    ours = model_class(config)(config, dtype=torch.float32, attention_backend="torch")
    ours.load_weights(hf.state_dict().items())
    return hf, ours


@torch.no_grad()
def _hf_logits(hf, tokens: list[int]) -> torch.Tensor:
    return hf(torch.tensor([tokens])).logits[0]


class PagedRun:
    """Allocates KV blocks (optionally shuffled) for sequences and steps them through a Worker."""

    def __init__(self, model, block_size: int, shuffle: bool, num_blocks: int = 64):
        self.worker = Worker(model, num_blocks, block_size)
        self.free = list(range(1, num_blocks))
        if shuffle:
            random.Random(1).shuffle(self.free)
        self.block_size = block_size
        self.tables: dict[int, list[int]] = {}
        self.computed: dict[int, int] = {}

    def seq(self, sid: int, tokens: list[int]) -> SequenceInput:
        table = self.tables.setdefault(sid, [])
        done = self.computed.get(sid, 0)
        while len(table) * self.block_size < done + len(tokens):
            table.append(self.free.pop())
        self.computed[sid] = done + len(tokens)
        return SequenceInput(tokens, done, list(table))

    def share(self, sid: int, source: int, num_blocks: int) -> None:
        """Start `sid` on the first full blocks of `source`, as the prefix cache does."""
        self.tables[sid] = self.tables[source][:num_blocks]
        self.computed[sid] = num_blocks * self.block_size

    def step(self, work: list[tuple[int, list[int]]]) -> torch.Tensor:
        return self.worker.execute_model([self.seq(sid, toks) for sid, toks in work])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prefill_all_positions(name):
    hf, ours = _pair(name)
    tokens = [random.Random(2).randrange(97) for _ in range(23)]
    run = PagedRun(ours, 16, shuffle=True)
    ids, positions, meta = build_batch([run.seq(0, tokens)], 16)
    with torch.no_grad():
        logits = ours.compute_logits(ours(ids, positions, meta))
    torch.testing.assert_close(logits, _hf_logits(hf, tokens), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block_size,shuffle", [(1, False), (16, True), (4, True)])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_decode_step_by_step(name, block_size, shuffle):
    hf, ours = _pair(name)
    tokens = [random.Random(3).randrange(97) for _ in range(20)]
    expected = _hf_logits(hf, tokens)
    run = PagedRun(ours, block_size, shuffle)
    got = [run.step([(0, tokens[:5])])[0]]
    for i in range(5, len(tokens)):
        got.append(run.step([(0, [tokens[i]])])[0])
    torch.testing.assert_close(torch.stack(got), expected[4:], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block_size", [1, 16])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_mixed_batch_chunked_prefill_and_decodes(name, block_size):
    hf, ours = _pair(name)
    rng = random.Random(4)
    a = [rng.randrange(97) for _ in range(30)]  # prefilled in chunks of 12, 12, 6
    b = [rng.randrange(97) for _ in range(9)]  # prefilled, then decoded
    c = [rng.randrange(97) for _ in range(7)]  # fresh prefill joining later
    run = PagedRun(ours, block_size, shuffle=True)
    run.step([(1, b[:6])])
    first = run.step([(0, a[:12]), (1, [b[6]])])
    second = run.step([(1, [b[7]]), (0, a[12:24]), (2, c)])
    third = run.step([(0, a[24:]), (1, [b[8]]), (2, [5])])
    ref_a, ref_b = _hf_logits(hf, a), _hf_logits(hf, b)
    torch.testing.assert_close(first, torch.stack([ref_a[11], ref_b[6]]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, torch.stack([ref_b[7], ref_a[23], _hf_logits(hf, c)[-1]]),
                               rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(third, torch.stack([ref_a[29], ref_b[8], _hf_logits(hf, c + [5])[-1]]),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("block_size", [4, 16])
@pytest.mark.parametrize("name", ["llama-gqa", "qwen3-qknorm-mqa"])
def test_batches_over_shared_prefix_blocks(name, block_size):
    """Sequences reusing another's prompt blocks (the prefix cache) prefill — one of them in two
    chunks — and decode together, their shared blocks attended once for the whole batch; every
    logit matches transformers."""
    hf, ours = _pair(name)
    rng = random.Random(5)
    prompt = [rng.randrange(97) for _ in range(37)]
    texts = [prompt + [rng.randrange(97) for _ in range(n)] for n in (3, 11, 14)]
    run = PagedRun(ours, block_size, shuffle=True)
    run.step([(0, texts[0])])
    for sid in (1, 2):
        run.share(sid, 0, len(prompt) // block_size)
    start = run.computed[1]
    texts[0].append(rng.randrange(97))
    got = run.step([(0, texts[0][-1:]), (1, texts[1][start:]), (2, texts[2][start:-5])])
    expected = [_hf_logits(hf, texts[0])[-1], _hf_logits(hf, texts[1])[-1],
                _hf_logits(hf, texts[2][:-5])[-1]]
    torch.testing.assert_close(got, torch.stack(expected), rtol=1e-4, atol=1e-4)
    for sid in (0, 1):
        texts[sid].append(rng.randrange(97))
    got = run.step([(0, texts[0][-1:]), (1, texts[1][-1:]), (2, texts[2][-5:])])
    expected = torch.stack([_hf_logits(hf, text)[-1] for text in texts])
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    for _ in range(3):
        for text in texts:
            text.append(rng.randrange(97))
        got = run.step([(sid, text[-1:]) for sid, text in enumerate(texts)])
        expected = torch.stack([_hf_logits(hf, text)[-1] for text in texts])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_bf16_weights_stay_close_to_fp32():
    """bf16 weights and KV cache (attention accumulating in float32) track the float32 model."""
    hf, ours32 = _pair("llama-gqa")
    config = CONFIGS["llama-gqa"]
    ours16 = model_class(config)(config, dtype=torch.bfloat16)
    ours16.load_weights(hf.state_dict().items())
    tokens = list(range(3, 40))
    l32 = PagedRun(ours32, 16, False).step([(0, tokens)])
    l16 = PagedRun(ours16, 16, False).step([(0, tokens)])
    assert l16.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(l16, l32).min() > 0.99


def test_float16_on_cpu_is_refused():
    from callm.model_executor.worker import check_dtype

    with pytest.raises(ValueError, match="float16 is not supported on CPU"):
        check_dtype(torch.float16)


def test_unknown_architecture_is_a_clear_error():
    config = LlamaConfig(**SMALL, num_attention_heads=4)
    config.architectures = ["GPT2LMHeadModel"]
    with pytest.raises(ValueError, match="unsupported model architecture.*LlamaForCausalLM"):
        model_class(config)
