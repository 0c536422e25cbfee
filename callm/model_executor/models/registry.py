"""Model classes by HF architecture name; plugins add their own with `register_model`."""

import importlib

_MODELS: dict[str, str | type] = {
    "LlamaForCausalLM": "callm.model_executor.models.llama:LlamaForCausalLM",
    "MistralForCausalLM": "callm.model_executor.models.llama:MistralForCausalLM",
    "Qwen2ForCausalLM": "callm.model_executor.models.qwen2:Qwen2ForCausalLM",
    "Qwen3ForCausalLM": "callm.model_executor.models.qwen3:Qwen3ForCausalLM",
}


def register_model(architecture: str, model: str | type) -> None:
    """`model` is a class or "module:Class" (imported when first used)."""
    _MODELS[architecture] = model


def supported_architectures() -> list[str]:
    return sorted(_MODELS)


def model_class(config) -> type:
    for architecture in getattr(config, "architectures", None) or []:
        if architecture in _MODELS:
            model = _MODELS[architecture]
            if isinstance(model, str):
                module, _, name = model.partition(":")
                model = _MODELS[architecture] = getattr(importlib.import_module(module), name)
            return model
    raise ValueError(f"unsupported model architecture {getattr(config, 'architectures', None)}; "
                     f"supported: {', '.join(supported_architectures())}")
