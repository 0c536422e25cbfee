"""RMSNorm computed in float32, as the reference implementations do, whatever the weight dtype."""

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, size: int, eps: float, dtype: torch.dtype):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size, dtype=dtype), requires_grad=False)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        """With `residual`, first adds it (in the model dtype, as the reference models do) and
        also returns the new residual stream."""
        if residual is not None:
            x = residual = x + residual
        x32 = nn.functional.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        out = self.weight * x32.to(x.dtype)
        return out if residual is None else (out, residual)
