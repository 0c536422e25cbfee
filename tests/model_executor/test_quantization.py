"""Quantized weights (`--quantization int8|int4`): the kernels against their own dequantized
weights, int4 keeping GGUF Q4 blocks, the row count where a product goes dense, and the
accuracy gate on the embedded model's real weights — teacher-forced greedy agreement with the
unquantized model and the perplexity of a fixed text."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from callm.model_executor.layers.quantization import (GROUP_SIZE, Int4Weight, Int8Weight,
                                                      QuantizedMatmul, _int4_layout_ok,
                                                      gguf_precision_class, quantize_model,
                                                      resolve_quantization)
from callm.model_executor.models.registry import model_class
from callm.model_executor.worker import SequenceInput, Worker

TEXT = ("The old lighthouse keeper climbed the spiral stairs every evening at dusk. He wound "
        "the clockwork, trimmed the wick and polished the great lens until it shone. Ships "
        "passing the rocky point had relied on his light for forty years, and not one of them "
        "had run aground in all that time. When the town council proposed replacing him with "
        "an automatic lamp, the fishermen signed a petition, the children wrote letters, and "
        "the keeper himself said nothing at all. He simply went on climbing the stairs.\n\n"
        "To compute the average of a list of numbers, add them together and divide the sum by "
        "how many numbers there are. For example, the average of 4, 8 and 15 is 27 divided by "
        "3, which is 9. In Python this is written as sum(values) / len(values), and an empty "
        "list must be handled first, because dividing by zero raises an exception.\n\n"
        "The weather in Paris is usually mild in spring, with temperatures between ten and "
        "twenty degrees Celsius. Visitors should pack an umbrella, since short showers are "
        "common in April, and comfortable shoes for walking along the river.")


def _weight(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 0.05


@pytest.mark.parametrize("kind", [Int8Weight, Int4Weight])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_kernel_matches_its_own_dequantized_weight(kind, dtype):
    weight = _weight(192, 128)
    q = kind(weight, dtype)
    x = torch.randn(5, 128).to(dtype)
    kernel = q.matmul(x).float()
    dense = torch.nn.functional.linear(x.float(), q.dense().float())
    torch.testing.assert_close(kernel, dense, rtol=2e-2, atol=2e-2)
    # and the dequantized weight is close to the original (int4 loosely: 16 levels per group)
    error = (q.dense().float() - weight).abs().max() / weight.abs().max()
    assert error < (0.01 if kind is Int8Weight else 0.08)


def test_int4_unpacking_reads_torch_packing():
    assert _int4_layout_ok()


def test_int4_keeps_gguf_q4_blocks():
    """A Q4_1 block is d * q + m over 32 weights, q in 0..15: int4 holds it up to bf16 rounding
    of its scale and zero — a fraction of one step d, where a grid not aligned with the
    block's would be off by up to half a step."""
    gen = torch.Generator().manual_seed(1)
    n, k = 128, 256
    d = torch.rand(n, k // GROUP_SIZE, 1, generator=gen) * 0.01 + 0.001
    m = -torch.rand(n, k // GROUP_SIZE, 1, generator=gen) * 0.05
    q = torch.randint(0, 16, (n, k // GROUP_SIZE, GROUP_SIZE), generator=gen)
    q[..., 0], q[..., 1] = 0, 15  # every block spans its full range, as GGUF's quantizer makes
    weight = (d * q + m).reshape(n, k)
    back = Int4Weight(weight, torch.float32).dense()
    steps = (back - weight).abs() / d.repeat_interleave(GROUP_SIZE, -1).reshape(n, k)
    assert steps.max() < 0.2 and steps.mean() < 0.05


def test_int4_falls_back_to_int8_where_the_layout_cannot_hold_the_shape():
    assert not Int4Weight.fits(_weight(96, 128))  # out features not a multiple of 64
    assert not Int4Weight.fits(_weight(128, 48))  # in features not a multiple of 32


def test_many_rows_go_dense_few_rows_use_the_kernel():
    weight = Int8Weight(_weight(128, 64), torch.bfloat16)
    matmul = QuantizedMatmul(weight, dense_above=2)
    bias = torch.randn(128).bfloat16()
    few, many = torch.randn(2, 64).bfloat16(), torch.randn(3, 64).bfloat16()
    assert torch.equal(matmul(few, bias), weight.matmul(few) + bias)
    assert torch.equal(matmul(many, bias),
                       torch.nn.functional.linear(many, weight.dense(), bias))


def test_precision_class_and_resolution():
    assert gguf_precision_class("Q4_K") == gguf_precision_class("Q4_1") == "int4"
    assert gguf_precision_class("Q6_K") == gguf_precision_class("Q8_0") == "int8"
    assert gguf_precision_class("F16") == gguf_precision_class(None) == "none"
    shape = (256, 128)
    assert resolve_quantization("auto", None, torch.bfloat16, shape)[0] == "none"
    assert resolve_quantization("auto", "BF16", torch.bfloat16, shape)[0] == "none"
    assert resolve_quantization("int8", None, torch.float32, shape) == ("int8", "asked for")
    method, why = resolve_quantization("auto", "Q4_K", torch.bfloat16, shape)
    assert method in ("int4", "none") and "Q4_K" in why  # "none" where the kernel is slower
    with pytest.raises(ValueError, match="unknown quantization"):
        resolve_quantization("int3", None, torch.float32, shape)


def test_engine_config_rejects_an_unknown_method():
    from callm.config import EngineConfig

    with pytest.raises(ValueError, match="unsupported quantization 'fp8'"):
        EngineConfig(quantization="fp8")


def _prefill_logits(model, tokens: list[int]) -> torch.Tensor:
    """Logits at every position of one prefill over a fresh paged cache."""
    from callm.model_executor.worker import build_batch

    worker = Worker(model, num_blocks=-(-len(tokens) // 16), block_size=16)
    ids, positions, meta = build_batch(
        [SequenceInput(tokens, 0, list(range(worker.num_blocks)))], 16)
    with torch.inference_mode():
        return model.compute_logits(model(ids, positions, meta))


def test_tiny_model_quantized_tracks_the_dense_one():
    config = LlamaConfig(vocab_size=128, hidden_size=128, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=True)
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    state = AutoModelForCausalLM.from_config(config, dtype=torch.float32).state_dict()
    dense = model_class(config)(config, dtype=torch.bfloat16)
    dense.load_weights(state.items())
    tokens = list(range(5, 45))
    reference = _prefill_logits(dense, tokens)
    for method in ("int8", "int4"):
        model = model_class(config)(config, dtype=torch.bfloat16)
        model.load_weights(state.items())
        quantize_model(model, method, torch.bfloat16)
        assert not any(n.endswith("proj.weight") for n, _ in model.named_parameters())
        if method == "int4":
            assert isinstance(model.model.layers[0].mlp.gate_up_proj.quantized.weight, Int4Weight)
        logits = _prefill_logits(model, tokens)
        assert torch.nn.functional.cosine_similarity(logits, reference).min() > 0.98


@pytest.fixture(scope="module")
def embedded():
    from callm.model_executor.loader import load_config
    from callm.model_executor.worker import load_model
    from callm.model_files import DEFAULT_MODEL, load_tokenizer, resolve_model

    path = resolve_model(DEFAULT_MODEL)
    tokens = load_tokenizer(DEFAULT_MODEL).encode(TEXT, add_special_tokens=False)
    return path, load_config(path), tokens, load_model(path, torch.float32)


def _perplexity(logits: torch.Tensor, tokens: list[int]) -> float:
    loss = torch.nn.functional.cross_entropy(logits[:-1].float(), torch.tensor(tokens[1:]))
    return math.exp(loss.item())


def test_embedded_gguf_records_its_quant_type(embedded):
    _, config, _, _ = embedded
    assert config.gguf_quant_type == "Q4_1"


@pytest.mark.parametrize("method,min_agreement,max_ppl_ratio", [("int8", 0.85, 1.03),
                                                                ("int4", 0.9, 1.03)])
def test_accuracy_gate_on_the_embedded_model(embedded, method, min_agreement, max_ppl_ratio):
    """Teacher-forced greedy agreement (the argmax at every position of a fixed text) with the
    unquantized float32 model, and the perplexity on that text. int4 holds the file's Q4_1
    blocks, so it stays closer than int8's one scale per row (bf16 alone agrees ~0.95)."""
    from callm.model_executor.worker import load_model

    path, _, tokens, dense = embedded
    reference = _prefill_logits(dense, tokens)
    quantized = load_model(path, torch.bfloat16, quantization=method)
    logits = _prefill_logits(quantized, tokens)
    agreement = (logits.argmax(-1) == reference.argmax(-1)).float().mean().item()
    ratio = _perplexity(logits, tokens) / _perplexity(reference, tokens)
    assert agreement >= min_agreement, agreement
    assert ratio <= max_ppl_ratio, ratio


def test_llm_with_int4_weights_makes_a_required_tool_call():
    from callm import LLM, SamplingParams

    llm = LLM(quantization="int4", max_model_len=1024, kv_cache_memory=32 * 2**20)
    assert llm.engine.config.quantization == "int4"
    tools = [{"type": "function", "function": {
        "name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}}]
    out = llm.chat([{"role": "user", "content": "Weather in Paris?"}], tools=tools,
                   tool_choice="required", sampling_params=SamplingParams(max_tokens=60))
    calls = out[0].outputs[0].tool_calls
    assert calls and calls[0].function.name == "get_weather"
