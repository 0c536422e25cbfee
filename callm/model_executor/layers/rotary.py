"""Rotary position embedding (the "rotate half" layout of HF checkpoints), in float32.

Frequencies come from transformers' rope functions, so rope scaling (llama3, linear, yarn, ...)
follows the reference exactly; cos/sin are tabulated once for all positions.
"""

import torch
from torch import nn


def inverse_frequencies(config, head_dim: int) -> tuple[torch.Tensor, float]:
    params = dict(getattr(config, "rope_parameters", None) or {})
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        theta = params.get("rope_theta", getattr(config, "rope_theta", 10000.0))
        exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
        return 1.0 / (theta ** exponents), 1.0
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(f"unsupported rope scaling type {rope_type!r}")
    inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](config, torch.device("cpu"))
    return inv_freq.float(), float(scaling)


class RotaryEmbedding(nn.Module):
    def __init__(self, config, head_dim: int, max_positions: int):
        super().__init__()
        inv_freq, scaling = inverse_frequencies(config, head_dim)
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        angles = torch.cat([freqs, freqs], dim=-1)
        # rotate-half is x * cos + [-x2, x1] * sin = x * cos + roll(x) * [-sin, sin]: the sign
        # lives in the table, so a rotation is four ops
        sin = angles.sin()
        sin[:, :head_dim // 2] *= -1
        self.register_buffer("cos", angles.cos() * scaling, persistent=False)
        self.register_buffer("signed_sin", sin * scaling, persistent=False)
        self._last = (None, None, None)  # (positions, cos, sin): every layer of a step shares them

    def forward(self, positions: torch.Tensor, qk: torch.Tensor, heads: int):
        """qk: [T, heads + kv_heads, head_dim], queries then keys -> (q, k) rotated, in
        float32: both in one rotation."""
        last, cos, sin = self._last
        if positions is not last:
            cos = self.cos[positions].unsqueeze(1)
            sin = self.signed_sin[positions].unsqueeze(1)
            self._last = (positions, cos, sin)
        qk = qk.float()
        qk = qk * cos + qk.roll(qk.shape[-1] // 2, dims=-1) * sin
        return qk[:, :heads], qk[:, heads:]
