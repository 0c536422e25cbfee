"""The Llama decoder, which Mistral, Qwen2 and Qwen3 share with small changes (flags below).

Weights load from HF parameter names; q/k/v and gate/up are fused into one matrix each, so a
layer runs four GEMMs. Activations stay in the weights' dtype except where precision matters:
RMSNorm and rotary run in float32, attention accumulates in float32.
"""

from collections.abc import Iterable

import torch
from torch import nn

from callm.model_executor.attention_metadata import AttentionMetadata
from callm.model_executor.layers.attention import Attention
from callm.model_executor.layers.linear import (ColumnParallelLinear, QKVParallelLinear,
                                                RowParallelLinear)
from callm.model_executor.layers.norm import RMSNorm
from callm.model_executor.layers.rotary import RotaryEmbedding
from callm.model_executor.layers.vocab_embedding import ParallelLMHead, VocabParallelEmbedding

# checkpoint name piece -> (our fused parameter's name piece, which part of it)
FUSED_PARTS = {"q_proj": ("qkv_proj", 0), "k_proj": ("qkv_proj", 1), "v_proj": ("qkv_proj", 2),
               "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1)}


class LlamaAttention(nn.Module):
    def __init__(self, config, rotary: RotaryEmbedding, dtype: torch.dtype, qkv_bias: bool,
                 o_bias: bool, qk_norm: bool, attention_backend: str | None):
        super().__init__()
        hidden = config.hidden_size
        heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        self.qkv_proj = QKVParallelLinear(hidden, head_dim, heads, kv_heads, qkv_bias, dtype)
        self.o_proj = RowParallelLinear(  # the input features of this rank's query heads
            heads * head_dim, hidden, o_bias, dtype,
            shard=(self.qkv_proj.q_head_start * head_dim, self.qkv_proj.num_heads * head_dim))
        self.heads = self.qkv_proj.num_heads  # this rank's
        self.qk_heads = self.heads + self.qkv_proj.num_kv_heads
        self.head_dim = head_dim
        self.q_norm = RMSNorm(head_dim, config.rms_norm_eps, dtype) if qk_norm else None
        self.k_norm = RMSNorm(head_dim, config.rms_norm_eps, dtype) if qk_norm else None
        self.rotary = rotary
        self.attn = Attention(self.qkv_proj.num_heads, self.qkv_proj.num_kv_heads, head_dim,
                              head_dim ** -0.5, attention_backend)

    def forward(self, positions: torch.Tensor, x: torch.Tensor,
                meta: AttentionMetadata) -> torch.Tensor:
        # q, k, v heads side by side: [T, heads + 2 kv_heads, D], split by views
        qkv = self.qkv_proj(x).view(x.shape[0], -1, self.head_dim)
        qk, v = qkv[:, :self.qk_heads], qkv[:, self.qk_heads:]
        if self.q_norm is not None:
            qk = torch.cat([self.q_norm(qk[:, :self.heads]), self.k_norm(qk[:, self.heads:])], 1)
        q, k = self.rotary(positions, qk, self.heads)
        out = self.attn(q, k, v, meta)
        return self.o_proj(out if out.dtype == x.dtype else out.to(x.dtype))


class LlamaMLP(nn.Module):
    def __init__(self, config, dtype: torch.dtype, bias: bool):
        super().__init__()
        size = config.intermediate_size
        self.gate_up_proj = ColumnParallelLinear(config.hidden_size, [size, size], bias, dtype)
        self.down_proj = RowParallelLinear(size, config.hidden_size, bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(nn.functional.silu(gate) * up)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, config, rotary, dtype, flags: dict, attention_backend: str | None):
        super().__init__()
        self.self_attn = LlamaAttention(config, rotary, dtype, flags["qkv_bias"],
                                        flags["o_bias"], flags["qk_norm"], attention_backend)
        self.mlp = LlamaMLP(config, dtype, flags["mlp_bias"])
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)

    def forward(self, positions, x, residual, meta):
        if residual is None:
            residual, x = x, self.input_layernorm(x)
        else:
            x, residual = self.input_layernorm(x, residual)
        x = self.self_attn(positions, x, meta)
        x, residual = self.post_attention_layernorm(x, residual)
        return self.mlp(x), residual


class LlamaModel(nn.Module):
    def __init__(self, config, dtype, flags, max_positions: int, attention_backend: str | None):
        super().__init__()
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        rotary = RotaryEmbedding(config, head_dim, max_positions)
        self.embed_tokens = VocabParallelEmbedding(config.vocab_size, config.hidden_size, dtype)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, rotary, dtype, flags,
                                                      attention_backend)
                                    for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, dtype)

    def forward(self, input_ids, positions, meta):
        x, residual = self.embed_tokens(input_ids), None
        for layer in self.layers:
            x, residual = layer(positions, x, residual, meta)
        return self.norm(x, residual)[0]


class LlamaForCausalLM(nn.Module):
    # None: read the config's attention_bias / mlp_bias, as Llama does.
    qkv_bias: bool | None = None
    qk_norm = False

    def __init__(self, config, dtype: torch.dtype = torch.bfloat16, max_positions: int | None = None,
                 attention_backend: str | None = None):
        super().__init__()
        self.config = config
        attention_bias = bool(getattr(config, "attention_bias", False))
        flags = {"qkv_bias": attention_bias if self.qkv_bias is None else self.qkv_bias,
                 "o_bias": attention_bias if self.qkv_bias is None else False,
                 "mlp_bias": bool(getattr(config, "mlp_bias", False)), "qk_norm": self.qk_norm}
        max_positions = max_positions or config.max_position_embeddings
        self.model = LlamaModel(config, dtype, flags, max_positions, attention_backend)
        self.lm_head = ParallelLMHead(config.vocab_size, config.hidden_size, dtype)
        self.tie_word_embeddings = bool(getattr(config, "tie_word_embeddings", False))
        if self.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor,
                meta: AttentionMetadata) -> torch.Tensor:
        """Hidden states of every token of the flat batch."""
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.compute_logits(hidden).float()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load from HF-named full tensors; each layer keeps its tensor-parallel slice. A tensor
        may be lazy (`loader.WeightSlice`): indexing it reads only that slice."""
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in weights:
            if "rotary_emb" in name or (self.tie_word_embeddings and name == "lm_head.weight"):
                continue
            part = 0
            for piece, (fused, index) in FUSED_PARTS.items():
                if f".{piece}." in name:
                    name, part = name.replace(f".{piece}.", f".{fused}."), index
                    break
            if name not in params:
                raise ValueError(f"checkpoint tensor {name!r} has no place in "
                                 f"{type(self).__name__}")
            param = params[name]
            module = self.get_submodule(name.rsplit(".", 1)[0])
            tensor = tensor.to(param.dtype)
            if hasattr(module, "load"):
                module.load(param, tensor, part)
            else:
                param.data.copy_(tensor[...])
            loaded.add(name)
        missing = set(params) - loaded
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")


class MistralForCausalLM(LlamaForCausalLM):
    """Mistral's decoder is Llama's (its sliding window is not applied: contexts stay within it
    for the models we serve)."""
