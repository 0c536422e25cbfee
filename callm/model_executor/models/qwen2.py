"""Qwen2 / Qwen2.5: the Llama decoder with biases on the q/k/v projections."""

from callm.model_executor.models.llama import LlamaForCausalLM


class Qwen2ForCausalLM(LlamaForCausalLM):
    qkv_bias = True
