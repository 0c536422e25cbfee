"""Qwen3: the Llama decoder with RMSNorm over each query and key head before rotary."""

from callm.model_executor.models.llama import LlamaForCausalLM


class Qwen3ForCausalLM(LlamaForCausalLM):
    qkv_bias = False
    qk_norm = True
