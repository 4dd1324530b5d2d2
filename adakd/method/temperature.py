"""The temperature strategies of the paper's Table 5 other than IDTS (docs/method.md §3.1).

Fixed τ needs nothing here (``idts=off``, ``base_temperature=τ``); inverse IDTS is
``adakd.method.idts``. This module holds the two that change how the KD term sees τ:

- **Logit standardisation** (Sun et al., CVPR 2024): each token's logits are z-scored over the
  vocabulary, for both models, before the temperature:

      z̃ = (z − mean_v z) / (std_v z + 1e-7)        std with Bessel's correction (torch.std)

- **CTKD** (Li et al., AAAI 2023), one learnable global temperature θ (initialised at
  ``base_temperature``, 1 by default) trained with the student through a gradient-reversal
  layer (GRL), so that τ moves to *increase* the distillation loss while the student decreases it:

      τ = max(GRL_λ(θ), 0.05)        GRL_λ: forward x ↦ x, backward g ↦ −λ·g
      λ(n) = ½ (1 + cos(π·f)),  f = min(1, n / (N − 1))   (step n = 0 … N − 1 of N: 1 → 0)

  The KD term then uses τ for both models and every selected token, with τ² in front, so
  ∂L/∂θ = −λ · ∂L/∂τ.

``tempered_divergence`` computes the per-token divergence under either (or both).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .divergences import LOG_FLOOR, compute_dtype, divergence, divergence_from_log_probs

STD_EPS = 1e-7  # added to the standard deviation (logit standardisation's reference code)
CTKD_FLOOR = 0.05  # τ is clamped here: a learned temperature must stay positive


def standardize_logits(logits: Tensor, eps: float = STD_EPS) -> Tensor:
    """Per-token z-score over the vocabulary ``[..., V] -> [..., V]`` (differentiable):

        z̃ = (z − mean(z)) / (std(z) + eps),   std with Bessel's correction (÷ (V − 1))

    Needs finite logits (a −inf entry makes the mean −inf).
    """
    mean = logits.mean(-1, keepdim=True)
    std = logits.std(-1, keepdim=True)
    return (logits - mean) / (std + eps)


class _GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by −λ."""

    @staticmethod
    def forward(ctx, x: Tensor, strength: float) -> Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return -ctx.strength * grad, None


def gradient_reversal(x: Tensor, strength: float) -> Tensor:
    """GRL_λ(x): ``x`` unchanged forward, gradient ``−λ·g`` backward (λ = ``strength`` ≥ 0)."""
    if not strength >= 0:
        raise ValueError(f"gradient-reversal strength must be >= 0 (got {strength})")
    return _GradientReversal.apply(x, float(strength))


def ctkd_strength(step: int, total_steps: int) -> float:
    """λ of step ``step`` (0-based) of ``total_steps``: ½(1 + cos(π·min(1, n/(N−1)))), 1 → 0."""
    if total_steps < 1 or step < 0:
        raise ValueError(f"need step >= 0 and total_steps >= 1 (got {step}, {total_steps})")
    f = min(1.0, step / max(1, total_steps - 1))
    return 0.5 * (1.0 + math.cos(math.pi * f))


class CTKDTemperature(torch.nn.Module):
    """CTKD's learnable global temperature θ (a scalar parameter), read through the GRL.

    ``module(strength)`` returns τ = max(GRL_λ(θ), CTKD_FLOOR) as a 0-dim tensor for the loss;
    ``value`` is θ as a float (what metrics.jsonl logs as ``ctkd_tau``).
    """

    def __init__(self, initial: float = 1.0):
        super().__init__()
        if not initial > CTKD_FLOOR:
            raise ValueError(f"CTKD's initial temperature must be > {CTKD_FLOOR} (got {initial})")
        self.tau = torch.nn.Parameter(torch.tensor(float(initial)))

    def forward(self, strength: float) -> Tensor:
        return gradient_reversal(self.tau, strength).clamp_min(CTKD_FLOOR)

    @property
    def value(self) -> float:
        return float(self.tau.detach())


def tempered_divergence(
    name: str,
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float | Tensor,
    *,
    standardize: bool = False,
    **params: float,
) -> Tensor:
    """Per-token D(softmax(z̃_T/τ), softmax(z̃_S/τ)) ``[N, V] -> [N]``, without the τ² factor.

    z̃ = ``standardize_logits(z)`` when ``standardize``, else z. ``temperature``: a float, a
    per-token ``[N]`` tensor or a 0-dim tensor. A tensor τ that requires grad (CTKD) keeps its
    gradient, which reaches it through both the student's and the teacher's softmax. Without
    either option this is ``adakd.method.divergences.divergence``. The teacher logits are detached.

    Standardisation is computed as a per-token temperature: the softmax ignores a shift of a
    row, so softmax(((z − μ)/(σ + ε))/τ) = softmax(z / (τ·(σ + ε))). That saves the centred
    copy of the logits; the gradient still flows through the student's σ.
    """
    teacher_logits = teacher_logits.detach()
    learned = isinstance(temperature, Tensor) and temperature.requires_grad
    if not standardize and not learned:
        return divergence(name, student_logits, teacher_logits, temperature, **params)
    dtype = compute_dtype(student_logits, teacher_logits)
    tau = temperature.to(dtype) if isinstance(temperature, Tensor) else float(temperature)
    if isinstance(tau, Tensor) and tau.dim():
        tau = tau.unsqueeze(-1)  # one τ per token, broadcast over V
    # floor −inf before dividing: −inf/τ would give a NaN gradient for τ (0 · ∞)
    s = _floored(student_logits.to(dtype))
    with torch.no_grad():
        t = _floored(teacher_logits.to(dtype))
        t_std = t.std(-1, keepdim=True) + STD_EPS if standardize else None
    if t_std is not None:  # standardize
        s_scaled = s / (tau * (s.std(-1, keepdim=True) + STD_EPS))
        t_scaled = t / (tau * t_std)
    elif isinstance(tau, Tensor) and tau.dim() == 0:  # CTKD's one τ: a cheaper backward for τ
        s_scaled, t_scaled = _DivideByScalar.apply(s, tau), _DivideByScalar.apply(t, tau)
    else:
        s_scaled, t_scaled = s / tau, t / tau
    logq = torch.log_softmax(s_scaled, dim=-1)
    logp = torch.log_softmax(t_scaled, dim=-1)
    return divergence_from_log_probs(name, logq, logp, **params)


class _DivideByScalar(torch.autograd.Function):
    """x / τ for a 0-dim τ. Backward: ∂/∂x = g / τ (only when x needs it) and
    ∂/∂τ = −Σ g·x / τ² as one dot product, where autograd's division would build three
    [N, V] temporaries for the τ gradient alone."""

    @staticmethod
    def forward(ctx, x: Tensor, tau: Tensor) -> Tensor:
        ctx.save_for_backward(x, tau)
        return x / tau

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, tau = ctx.saved_tensors
        grad_x = grad / tau if ctx.needs_input_grad[0] else None
        grad_tau = None
        if ctx.needs_input_grad[1]:
            grad_tau = -torch.dot(grad.reshape(-1), x.reshape(-1)) / (tau * tau)
        return grad_x, grad_tau


def _floored(logits: Tensor) -> Tensor:
    """``logits`` with −inf entries at ``LOG_FLOOR``: on CPU a read-only check spares the copy
    when there is none; on CUDA always a copy (checking would wait for the device)."""
    if not logits.is_cuda and logits.numel() and not torch.isneginf(logits.detach().amin()):
        return logits
    return logits.clamp_min(LOG_FLOOR)
