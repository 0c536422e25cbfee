"""EngineConfig: everything that shapes one engine instance, with defaults for this CPU."""

from dataclasses import dataclass

from callm.model_files import DEFAULT_MODEL


@dataclass
class EngineConfig:
    model: str = DEFAULT_MODEL  # alias, GGUF file or HF folder
    served_model_name: str | None = None
    dtype: str = "auto"  # "auto" (measured at startup) | "bfloat16" | "float32" (f16: CUDA)
    quantization: str = "auto"  # "auto" (a quantized GGUF's precision class) | none | int8 | int4
    num_threads: int | None = None  # torch intra-op threads; default: every core
    max_model_len: int | None = None  # default: the model's context, capped at 8192
    max_num_seqs: int = 64  # most sequences in one step
    max_num_batched_tokens: int = 2048  # token budget of one step (chunked prefill beyond it)
    block_size: int = 16  # tokens per KV block
    kv_cache_memory: int | None = None  # bytes for the KV cache; default: sized from free memory
    enable_prefix_caching: bool = True
    tensor_parallel_size: int = 1
    distributed_executor_backend: str | None = None  # "uni" | "mp" | "ray"
    attention_backend: str | None = None  # "torch" | "triton"; default by device
    seed: int = 0
    tokenizer: str | None = None  # default: the model's own
    chat_template: str | None = None  # template text or file; default: the model's (or ours)
    tool_call_parser: str | None = None
    structured_outputs_backend: str = "xgrammar"  # "xgrammar" | "llguidance" | "outlines"

    def __post_init__(self):
        if self.block_size < 1 or self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("block_size, max_num_seqs and max_num_batched_tokens must be >= 1")
        if self.structured_outputs_backend not in ("xgrammar", "llguidance", "outlines"):
            raise ValueError(f"unknown structured outputs backend "
                             f"{self.structured_outputs_backend!r}; use xgrammar, llguidance "
                             "or outlines")
        if self.dtype not in ("bfloat16", "float32", "float16", "auto"):
            raise ValueError(f"unsupported dtype {self.dtype!r}; use auto, bfloat16 or float32")
        if self.quantization not in ("auto", "none", "int8", "int4"):
            raise ValueError(f"unsupported quantization {self.quantization!r}; use auto, none, "
                             "int8 or int4")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {self.num_threads}")
