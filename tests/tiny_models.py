"""Tiny random-weight models saved as real HF folders (config, safetensors, a real tokenizer), so
engine and server tests exercise the same loading path as a user's model, in seconds."""

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from callm.model_files import load_tokenizer

ARCHES = {
    "llama": (LlamaConfig, "LlamaForCausalLM"),
    "qwen2": (Qwen2Config, "Qwen2ForCausalLM"),
}


def save_tiny_model(folder: Path, arch: str = "llama", seed: int = 0, **overrides) -> Path:
    """Write a 2-layer random model over SmolLM2's tokenizer (and chat template) to `folder`;
    `overrides` change config fields (e.g. num_attention_heads=6, num_key_value_heads=3)."""
    tokenizer = load_tokenizer("smollm2-135m-instruct")
    config_cls, architecture = ARCHES[arch]
    fields = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=1024, tie_word_embeddings=True,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    config = config_cls(**{**fields, **overrides})
    config.architectures = [architecture]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # larger weights than HF's init: outputs vary from token to token
        for p in model.parameters():
            p.normal_(0, 0.5 if p.dim() > 1 else 0.1).add_(1.0 if p.dim() == 1 else 0.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
