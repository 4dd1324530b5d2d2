"""IDTS — Inverse Difficulty Temperature Scaling (docs/method.md §3).

Over the selected tokens' difficulties s [N]:

    m   = median(s)                                  (lower median for even N: torch.median)
    ŝ_i = tanh( log( max(s_i / m, 1e-8) ) )          ∈ (−1, 1)
    τ_i = τ_base · exp(−c · ŝ_i)                      ∈ [τ_base·e^{−c}, τ_base·e^{c}]

Hard tokens (s > m) get τ < τ_base (sharper, corrective); easy tokens get τ > τ_base
(smoother). ``inverse=True`` is the paper's ablation τ_i = τ_base · exp(+c · ŝ_i).
"""

from __future__ import annotations

import torch
from torch import Tensor

RATIO_FLOOR = 1e-8  # log(max(s/m, 1e-8)): a zero-difficulty token maps to ŝ = tanh(−18.4) ≈ −1


@torch.no_grad()
def idts_temperatures(
    difficulty: Tensor, base_temperature: float = 1.0, c: float = 0.5, inverse: bool = False
) -> Tensor:
    """Per-token temperatures ``[N] -> [N]`` (float32, or float64 for float64 input), detached.

    Guard: when the median is 0 (e.g. identical teacher and student at the start) every ŝ is
    taken as 0, so τ = τ_base everywhere. An empty input gives an empty output.
    """
    if difficulty.dim() != 1:
        raise ValueError(f"difficulty must be a 1-D tensor [N] (got shape {tuple(difficulty.shape)})")
    if not base_temperature > 0:
        raise ValueError(f"base_temperature must be > 0 (got {base_temperature})")
    if not c >= 0:
        raise ValueError(f"IDTS strength c must be >= 0 (got {c})")
    dtype = torch.float64 if difficulty.dtype == torch.float64 else torch.float32
    s = difficulty.detach().to(dtype)
    if s.numel() == 0:
        return s.clone()
    m = torch.median(s)  # the lower median for an even count
    ratio = torch.where(m > 0, s / m.clamp_min(torch.finfo(dtype).tiny), torch.ones_like(s))
    s_hat = torch.tanh(torch.log(ratio.clamp_min(RATIO_FLOOR)))
    sign = 1.0 if inverse else -1.0
    return base_temperature * torch.exp(sign * c * s_hat)
