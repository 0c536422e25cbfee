"""The loader gives transformers' own configs and weights, from GGUF files and HF folders.

Fast tier: tiny GGUFs written here (llama, qwen2, qwen3, every supported tensor type) checked
against transformers' GGUF loading, tiny HF folders, the cache, and the errors. Slow tier: the
two real GGUFs against transformers (loading the reference takes 15-35 s on 2 cores).
"""

import json
import os

import numpy as np
import pytest
import torch

import gguf
from gguf import GGMLQuantizationType as Q

from callm.model_executor import loader
from callm.model_executor.loader import gguf_cache_folder, iter_weights, load_config
from callm.model_files import resolve_model


_REAL_CACHE_DIR = os.environ.get("CALLM_CACHE_DIR")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test converts from scratch into its own cache dir (real files are resolved first,
    since the assembled Qwen file lives in the real cache dir)."""
    monkeypatch.setenv("CALLM_CACHE_DIR", str(tmp_path / "cache"))


def _transformers_weights(path, config=None):
    """transformers' own float32 state dict for a GGUF: the reference."""
    pytest.importorskip("accelerate")  # transformers needs it to load a GGUF
    from transformers import AutoModelForCausalLM

    kwargs = {"config": config} if config is not None else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, **kwargs)
    return model.state_dict(), model.config


def _assert_same_weights(ours: dict, reference: dict, tied: bool):
    expected = set(reference) - ({"lm_head.weight"} if tied else set())
    assert set(ours) == expected
    for name, tensor in ours.items():
        assert tensor.dtype == torch.float32 and tensor.device.type == "cpu", name
        assert tensor.shape == reference[name].shape, name
        assert torch.equal(tensor, reference[name]), name


# --- tiny GGUFs, written the way llama.cpp writes them --------------------------------------

_BLOCKS = [Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q8_0, Q.Q4_K, Q.Q5_K, Q.Q6_K]
# where the float16 super-block scales sit in a K-quant block (the rest may be any bytes)
_K_SCALE_BYTES = {Q.Q4_K: (0, 2), Q.Q5_K: (0, 2), Q.Q6_K: (208,)}


def _encode(values: np.ndarray, qtype, rng) -> np.ndarray:
    """`values` in `qtype`; gguf cannot quantize K-types, so those get random blocks with sane
    scales (the reference is transformers reading the same bytes)."""
    if qtype == Q.F32:
        return values
    if qtype == Q.F16:
        return values.astype(np.float16)
    if qtype not in _K_SCALE_BYTES:
        return gguf.quants.quantize(values, qtype)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, (values.shape[0], values.shape[1] // block, size), dtype=np.uint8)
    for at in _K_SCALE_BYTES[qtype]:
        scale = rng.uniform(1e-3, 1e-2, blocks.shape[:2]).astype(np.float16)
        blocks[:, :, at:at + 2] = scale.view(np.uint8).reshape(*blocks.shape[:2], 2)
    return blocks.reshape(values.shape[0], -1)


def _llama_cpp_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert script: within each head, interleave the two rotary halves."""
    head_dim = w.shape[0] // heads
    return w.reshape(heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _tiny_hf_model(arch: str, tie: bool, bias: bool):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[arch]
    # qwen3's head size is not hidden / heads, as in the real Qwen3 models
    config = cls(vocab_size=96, hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                 max_position_embeddings=512, rms_norm_eps=1e-6, rope_theta=50000.0,
                 head_dim=32 if arch == "qwen3" else 64,
                 **({"attention_bias": True} if bias else {}))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # no all-ones norms or zero biases that would hide a mix-up
        for param in model.parameters():
            param.normal_()
    return model, config


def _write_tiny_gguf(path, arch: str, tie: bool = False, bias: bool = False):
    """A GGUF of a random tiny HF model. Returns (HF state dict, types used)."""
    model, config = _tiny_hf_model(arch, tie, bias)
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(f"tiny {arch}")
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(50000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(config.vocab_size)
    if arch == "llama":
        writer.add_rope_dimension_count(config.head_dim)
    else:
        writer.add_key_length(config.head_dim)
        writer.add_value_length(config.head_dim)
    names = gguf.get_tensor_name_map(
        next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch), config.num_hidden_layers)
    rng = np.random.default_rng(0)
    used, i = {}, 0
    for name, values in state.items():
        if tie and name == "lm_head.weight":
            continue
        base, kind = name.rsplit(".", 1)
        if arch == "llama" and ".q_proj." in name:
            values = _llama_cpp_permute(values, config.num_attention_heads)
        elif arch == "llama" and ".k_proj." in name:
            values = _llama_cpp_permute(values, config.num_key_value_heads)
        qtype = Q.F32
        if values.ndim == 2:  # every block type in turn; K-types need rows of 256
            qtype = _BLOCKS[i % len(_BLOCKS)]
            i += 1
            if qtype in _K_SCALE_BYTES and values.shape[1] % 256:
                qtype = Q.Q8_0
        used[name] = qtype
        data = _encode(values, qtype, rng)
        writer.add_tensor(f"{names.get_name(base)}.{kind}", data,
                          raw_dtype=qtype if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return state, used


@pytest.mark.parametrize("arch,tie,bias", [("llama", True, False), ("llama", False, True),
                                           ("qwen2", False, False), ("qwen3", True, False)])
def test_tiny_gguf_matches_transformers(tmp_path, arch, tie, bias):
    path = tmp_path / f"tiny-{arch}.gguf"
    original, used = _write_tiny_gguf(path, arch, tie, bias)
    assert set(_BLOCKS) <= set(used.values())
    assert bias == (arch == "llama" and "model.layers.0.self_attn.q_proj.bias" in used)

    config = load_config(path)
    classes = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
               "qwen3": "Qwen3ForCausalLM"}
    assert config.model_type == arch and config.architectures == [classes[arch]]
    assert (config.num_hidden_layers, config.hidden_size, config.intermediate_size) == (2, 256, 512)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    assert config.head_dim == (32 if arch == "qwen3" else 64)
    assert getattr(config, "attention_bias", True) is (bias or arch == "qwen2")
    assert config.rms_norm_eps == 1e-6 and config.rope_parameters["rope_theta"] == 50000.0
    assert config.vocab_size == 96 and config.tie_word_embeddings is tie
    assert config.max_position_embeddings == 512

    ours = dict(iter_weights(path, config))
    # independently of transformers: a row permutation commutes with row-wise quantization, so
    # undoing llama.cpp's permutation gives back the quantized original rows
    for name, qtype in used.items():
        if qtype not in _K_SCALE_BYTES:
            expected = gguf.quants.dequantize(_encode(original[name], qtype, None), qtype)
            expected = expected.reshape(original[name].shape)
            np.testing.assert_array_equal(ours[name].numpy(), expected)
    reference, _ = _transformers_weights(path, config)
    _assert_same_weights(ours, reference, tie)


def test_what_transformers_gguf_config_misses(tmp_path):
    """Why load_config looks into the file itself."""
    from transformers import AutoConfig

    qwen3, llama = tmp_path / "tiny-qwen3.gguf", tmp_path / "tiny-llama.gguf"
    _write_tiny_gguf(qwen3, "qwen3")
    _write_tiny_gguf(llama, "llama", bias=True)
    theirs = AutoConfig.from_pretrained(str(tmp_path), gguf_file=qwen3.name)
    # head_dim is left at Qwen3Config's default (128): right for the released Qwen3 models
    # only by coincidence; the file's attention.key_length says 32
    assert theirs.head_dim == 128 and load_config(qwen3).head_dim == 32
    assert not theirs.architectures  # the model registry needs it
    theirs = AutoConfig.from_pretrained(str(tmp_path), gguf_file=llama.name)
    # q/k/v/o biases go unnoticed (transformers' model then drops them without a word)
    assert theirs.attention_bias is False and load_config(llama).attention_bias is True
    assert theirs.rms_norm_eps == float(np.float32(1e-6)) != 1e-6 == load_config(llama).rms_norm_eps


def test_gguf_conversion_is_cached(tmp_path, monkeypatch):
    path = tmp_path / "tiny-llama.gguf"
    _write_tiny_gguf(path, "llama")
    config = load_config(path)
    first = dict(iter_weights(path, config))
    folder = gguf_cache_folder(path)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]

    opened, reader = [], gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a, **k: opened.append(a) or reader(*a, **k))
    cached_config = load_config(path)
    assert cached_config.to_dict() == config.to_dict()
    again = dict(iter_weights(path, cached_config))
    assert again.keys() == first.keys()
    assert all(torch.equal(again[k], first[k]) and again[k].dtype == torch.float32 for k in first)
    assert opened == []

    os.utime(path, ns=(1, 1))  # a changed file is converted again
    assert gguf_cache_folder(path) != folder
    load_config(path)
    assert opened


def test_gguf_cache_is_only_written_whole(tmp_path):
    path = tmp_path / "tiny-qwen2.gguf"
    _write_tiny_gguf(path, "qwen2")
    config = load_config(path, use_cache=False)
    folder = gguf_cache_folder(path)
    assert not folder.exists()
    weights = iter_weights(path, config)
    next(weights)
    weights.close()  # the caller stopped early
    assert list(folder.iterdir()) == []
    dict(iter_weights(path, config, use_cache=False))
    assert list(folder.iterdir()) == []


def test_unwritable_cache_only_costs_the_cache(tmp_path, monkeypatch):
    path = tmp_path / "tiny-llama.gguf"
    state, _ = _write_tiny_gguf(path, "llama")
    (tmp_path / "blocked").write_text("a file where the cache dir should be")
    monkeypatch.setenv("CALLM_CACHE_DIR", str(tmp_path / "blocked"))
    config = load_config(path)
    assert len(dict(iter_weights(path, config))) == len(state)


# --- HF folders ---------------------------------------------------------------------------


@pytest.mark.parametrize("tie,shard", [(True, None), (False, "8KB")])
def test_hf_folder_round_trips(tmp_path, tie, shard):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                         max_position_embeddings=128, rms_norm_eps=1e-5)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(str(tmp_path), **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").is_file() == bool(shard)

    loaded = load_config(tmp_path)
    assert type(loaded) is LlamaConfig
    for key in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "hidden_size",
                "intermediate_size", "vocab_size", "tie_word_embeddings", "rms_norm_eps",
                "max_position_embeddings", "rope_parameters"):
        assert getattr(loaded, key) == getattr(config, key), key
    ours = dict(iter_weights(tmp_path, loaded))
    reference = model.state_dict()
    assert set(ours) == set(reference) - ({"lm_head.weight"} if tie else set())
    for name, tensor in ours.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(tensor, reference[name]), name


def test_folder_with_only_bin_weights_is_refused(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=1).save_pretrained(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0")
    config = load_config(tmp_path)
    with pytest.raises(ValueError, match="pytorch_model.*safetensors"):
        iter_weights(tmp_path, config)


# --- errors -------------------------------------------------------------------------------


def _assert_clear(error: pytest.ExceptionInfo, path):
    message = str(error.value)
    assert str(path) in message
    assert all(arch in message for arch in ("llama", "mistral", "qwen2", "qwen3")), message


def test_corrupt_gguf_is_a_clear_error(tmp_path):
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError) as e:
        load_config(path)
    _assert_clear(e, path)
    with pytest.raises(ValueError) as e:
        dict(iter_weights(path, None))
    _assert_clear(e, path)


def test_truncated_gguf_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny-llama.gguf"
    _write_tiny_gguf(path, "llama")
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ValueError) as e:
        load_config(path)
    _assert_clear(e, path)


def test_unsupported_gguf_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "gpt2.gguf"
    writer = gguf.GGUFWriter(str(path), "gpt2")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match="'gpt2' is not supported") as e:
        load_config(path)
    _assert_clear(e, path)


def test_unsupported_folder_architecture_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ValueError, match="'gpt2' is not supported") as e:
        load_config(tmp_path)
    _assert_clear(e, tmp_path)


def test_not_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        load_config(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError) as e:
        load_config(tmp_path)
    _assert_clear(e, tmp_path)
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ValueError, match="neither a .gguf file nor"):
        load_config(other)


def test_unknown_gguf_tensor_is_named(tmp_path, monkeypatch):
    path = tmp_path / "tiny-llama.gguf"
    _write_tiny_gguf(path, "llama")
    config = load_config(path)
    monkeypatch.delitem(loader._GGUF_LAYER_NAMES, "ffn_up")
    with pytest.raises(ValueError, match="blk.0.ffn_up.weight"):
        dict(iter_weights(path, config))


# --- the real models ----------------------------------------------------------------------

REAL = {
    # alias: (layers, heads, kv heads, hidden, intermediate, rope theta, eps, vocab, tied, context)
    "smollm2-135m-instruct": (30, 9, 3, 576, 1536, 100000.0, 1e-5, 49152, True, 8192),
    "qwen2.5-coder-0.5b-instruct": (24, 14, 2, 896, 4864, 1000000.0, 1e-6, 151936, False, 32768),
}


@pytest.mark.slow
@pytest.mark.parametrize("alias", sorted(REAL))
def test_real_gguf_matches_transformers(alias, tmp_path, monkeypatch):
    if _REAL_CACHE_DIR is None:
        monkeypatch.delenv("CALLM_CACHE_DIR")
    else:
        monkeypatch.setenv("CALLM_CACHE_DIR", _REAL_CACHE_DIR)
    path = resolve_model(alias)  # the Qwen file is assembled in the real cache dir
    monkeypatch.setenv("CALLM_CACHE_DIR", str(tmp_path / "cache"))

    config = load_config(path)
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads,
            config.hidden_size, config.intermediate_size, config.rope_parameters["rope_theta"],
            config.rms_norm_eps, config.vocab_size, config.tie_word_embeddings,
            config.max_position_embeddings) == REAL[alias]
    assert config.model_type in ("llama", "qwen2") and len(config.architectures) == 1

    ours = {}
    for name, tensor in iter_weights(path, config):
        ours[name] = tensor
    reference, ref_config = _transformers_weights(path)
    assert ref_config.tie_word_embeddings == config.tie_word_embeddings
    _assert_same_weights(ours, reference, config.tie_word_embeddings)
    del reference
    # and the cached copy is the same again
    cached = dict(iter_weights(path, load_config(path)))
    assert all(torch.equal(cached[k], ours[k]) for k in ours)
