"""Per-token divergences between a teacher and a student next-token distribution.

Every divergence maps logits ``[..., V]`` to one number per token ``[...]``:

    D( p, q ),   p = softmax(z_T / τ)  (teacher),   q = softmax(z_S / τ)  (student)

without the τ² factor (the AdaKD loss applies it). Argument order is always (student, teacher).
The math runs in float32 whatever the input dtype (float64 stays float64), in log-space:
``log_softmax`` once per side, mixtures through ``logaddexp`` (a two-term logsumexp), never
``log(softmax(...))``. Teacher logits are treated as constants (detached).

Masked vocabulary: logits equal to −inf are floored at ``LOG_FLOOR`` (−1e30) before the
softmax. Their probability is then exactly 0 in float32/float64, so ``0·log 0`` terms vanish
without NaN in the value or the gradient, and every log-probability stays finite. A token that
one side masks and the other gives mass to yields a huge finite KL (≈ mass · 1e30), not ``inf``.
The floor is applied outside autograd (straight-through), so it costs no backward pass; a
masked logit receives whatever gradient reaches a zero-probability entry (0 when both sides
mask it).

Run ``python -c "import adakd; print(adakd.DIVERGENCES)"`` for the names and default parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from adakd.names import DIVERGENCES  # name -> default parameters; exposed as adakd.DIVERGENCES

LOG_FLOOR = -1e30  # −inf logits are clamped here: exp(LOG_FLOOR) == 0 exactly, logs stay finite


def compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (bf16/fp16/fp32 are all upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def log_probs(logits: Tensor, temperature: float | Tensor = 1.0, dtype: torch.dtype | None = None) -> Tensor:
    """log softmax(z / τ) over the last dim, upcast to ``dtype`` (default: float32/float64).

    Shapes: ``logits [..., V]``; ``temperature`` a positive float or a tensor ``[...]`` (one τ
    per token, broadcast over V). −inf logits are floored at ``LOG_FLOOR`` (see module doc).
    """
    dtype = dtype or compute_dtype(logits)
    tau: Tensor | float | None  # None: τ = 1, nothing to divide
    if isinstance(temperature, Tensor):
        tau = temperature.to(dtype).unsqueeze(-1)
    else:
        tau = None if temperature == 1.0 else float(temperature)
    # At most one new [..., V] tensor per call: an upcast copy is divided in place (autograd
    # tracks it); same-dtype kernels are the vectorised ones on CUDA.
    if logits.dtype != dtype:
        x = logits.to(dtype)
        if tau is not None:
            x = x.div_(tau)
    else:
        x = logits if tau is None else logits / tau
    if x is logits:  # never modify the caller's tensor
        if not logits.is_cuda and logits.numel() and not torch.isneginf(logits.detach().amin()):
            pass  # CPU, no −inf: nothing to floor (a read-only check; no sync cost off-GPU)
        else:
            x = logits.clone()  # clone's backward is free, unlike clamp_min's masked where
            with torch.no_grad():
                x.clamp_min_(LOG_FLOOR)
    else:
        # A fresh temporary: floor it in place, outside autograd (straight-through), so no
        # extra [..., V] tensor is kept for backward. Only −inf entries change, and their
        # gradient is whatever reaches a zero-probability logit (0 when both sides mask it).
        with torch.no_grad():
            x.clamp_min_(LOG_FLOOR)
    return torch.log_softmax(x, dim=-1)


# ----------------------------------------------------------------------------- the formulas
# Each takes (student log q, teacher log p), both finite [..., V], and returns [...].


def _kl(log_a: Tensor, log_b: Tensor) -> Tensor:
    """KL(a ‖ b) = Σ_v a (log a − log b). Zero-mass terms are 0·finite = 0."""
    return (log_a.exp() * (log_a - log_b)).sum(-1)


def _log_mix(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """log( w·a + (1−w)·b ) in log-space (logaddexp = two-term logsumexp)."""
    log_wa = math.log(weight_a) if weight_a > 0 else -math.inf
    log_wb = math.log1p(-weight_a) if weight_a < 1 else -math.inf
    return torch.logaddexp(log_a + log_wa, log_b + log_wb)


def _fkl(logq: Tensor, logp: Tensor) -> Tensor:
    return _kl(logp, logq)


def _rkl(logq: Tensor, logp: Tensor) -> Tensor:
    return _kl(logq, logp)


def _jsd(logq: Tensor, logp: Tensor, lam: float) -> Tensor:
    if not 0.0 < lam < 1.0:
        raise ValueError(f"jsd needs 0 < lam < 1 (got lam={lam}); at 0 or 1 it is identically 0")
    log_m = _log_mix(logp, logq, 1.0 - lam)  # m = (1−λ)p + λq
    return lam * _kl(logq, log_m) + (1.0 - lam) * _kl(logp, log_m)


def _tvd(logq: Tensor, logp: Tensor) -> Tensor:
    return 0.5 * (logp.exp() - logq.exp()).abs().sum(-1)


def _sfkl(logq: Tensor, logp: Tensor, lam: float) -> Tensor:
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"sfkl needs 0 <= lam < 1 (got lam={lam})")
    return _kl(logp, _log_mix(logp, logq, lam))  # KL(p ‖ λp + (1−λ)q)


def _srkl(logq: Tensor, logp: Tensor, lam: float) -> Tensor:
    if not 0.0 <= lam < 1.0:
        raise ValueError(f"srkl needs 0 <= lam < 1 (got lam={lam})")
    return _kl(logq, _log_mix(logq, logp, lam))  # KL(q ‖ λq + (1−λ)p)


def _ab(logq: Tensor, logp: Tensor, alpha: float, beta: float) -> Tensor:
    s = alpha + beta
    if alpha == 0 or beta == 0 or s == 0:
        raise ValueError(f"ab needs alpha != 0, beta != 0 and alpha + beta != 0 (got alpha={alpha}, beta={beta})")
    terms = torch.exp(alpha * logp + beta * logq) - (alpha / s) * torch.exp(s * logp) - (beta / s) * torch.exp(s * logq)
    return -terms.sum(-1) / (alpha * beta)


@torch.no_grad()
def akl_head_weight(logq: Tensor, logp: Tensor, mu: float = 0.5, chunk_rows: int = 256) -> Tensor:
    """AKL's per-token head weight h ∈ [0, 1] (Wu et al. 2024), without gradient.

    Sort the teacher's probabilities in descending order (stable: ties keep vocabulary
    order); the head is the prefix whose *exclusive* cumulative mass is below ``mu``, i.e. the
    top tokens up to ``mu`` of the mass **including the token that crosses the threshold**
    (so the head is never empty). Then

        h = Σ_{v ∈ head} |p_v − q_v| / Σ_v |p_v − q_v|        (0/0 → 0.5)

    Note: the AKL release's ``get_ratio`` uses the inclusive cumsum (``cumsum > mu`` is tail)
    and forces the first token into the head, so it leaves out the crossing token; we include
    it, which matches "top tokens up to 50 % of the mass" as an interval that covers μ.
    Rows are processed in chunks of ``chunk_rows`` to bound the sort's memory.
    """
    lead, vocab = logp.shape[:-1], logp.shape[-1]
    lp, lq = logp.reshape(-1, vocab), logq.detach().reshape(-1, vocab)
    out = torch.empty(lp.shape[0], dtype=lp.dtype, device=lp.device)
    for i in range(0, lp.shape[0], chunk_rows):
        p, q = lp[i : i + chunk_rows].exp(), lq[i : i + chunk_rows].exp()
        p_sorted, order = torch.sort(p, dim=-1, descending=True, stable=True)
        err = (p_sorted - q.gather(-1, order)).abs_()
        head = (torch.cumsum(p_sorted, dim=-1) - p_sorted) < mu  # exclusive cumsum
        total = err.sum(-1)
        head_err = (err * head).sum(-1)
        out[i : i + chunk_rows] = torch.where(total > 0, head_err / total.clamp_min(torch.finfo(total.dtype).tiny), 0.5)
    return out.reshape(lead)


def _akl(logq: Tensor, logp: Tensor, mu: float) -> Tensor:
    if not 0.0 < mu <= 1.0:
        raise ValueError(f"akl needs 0 < mu <= 1 (got mu={mu})")
    h = akl_head_weight(logq, logp, mu)  # a constant weight, as in the AKL release (detached q)
    return h * _kl(logp, logq) + (1.0 - h) * _kl(logq, logp)


_FORMULAS: dict[str, Callable[..., Tensor]] = {
    "fkl": _fkl,
    "rkl": _rkl,
    "jsd": _jsd,
    "tvd": _tvd,
    "sfkl": _sfkl,
    "srkl": _srkl,
    "ab": _ab,
    "akl": _akl,
}


def resolve_params(name: str, params: dict | None) -> dict[str, float]:
    """Default parameters of ``name`` updated by ``params``; unknown names/keys raise ValueError."""
    if name not in DIVERGENCES:
        raise ValueError(f"unknown divergence {name!r}; valid names: {', '.join(DIVERGENCES)}")
    merged = dict(DIVERGENCES[name])
    unknown = sorted(set(params or {}) - set(merged))
    if unknown:
        valid = ", ".join(merged) if merged else "none"
        raise ValueError(f"divergence {name!r} has no parameter(s) {', '.join(unknown)}; valid: {valid}")
    merged.update({k: float(v) for k, v in (params or {}).items()})
    return merged


def divergence_from_log_probs(name: str, student_logq: Tensor, teacher_logp: Tensor, **params: float) -> Tensor:
    """The divergence ``name`` from log-probabilities ``[..., V]`` (as made by ``log_probs``)."""
    return _FORMULAS[name](student_logq, teacher_logp, **resolve_params(name, params))


def divergence(
    name: str, student_logits: Tensor, teacher_logits: Tensor, temperature: float | Tensor = 1.0, **params: float
) -> Tensor:
    """Per-token divergence D(softmax(z_T/τ), softmax(z_S/τ)) without the τ² factor.

    Args:
        name: one of ``fkl`` KL(p‖q); ``rkl`` KL(q‖p); ``jsd`` λ·KL(q‖m) + (1−λ)·KL(p‖m) with
            m = (1−λ)p + λq (``lam``=0.9; equals the GKD paper's generalised JSD with
            β = 1 − λ); ``tvd`` ½Σ|p−q|; ``sfkl`` KL(p ‖ λp + (1−λ)q) and ``srkl``
            KL(q ‖ λq + (1−λ)p) (``lam``=0.1); ``ab`` −1/(αβ) Σ[p^α q^β − α/(α+β) p^{α+β}
            − β/(α+β) q^{α+β}] (``alpha``=0.2, ``beta``=0.7); ``akl`` h·KL(p‖q) + (1−h)·KL(q‖p)
            with h from ``akl_head_weight`` (``mu``=0.5).
        student_logits, teacher_logits: ``[..., V]``, any float dtype; the teacher is detached.
        temperature: a positive float, or a tensor ``[...]`` with one τ per token.
        params: overrides of the defaults above.

    Returns:
        ``[...]`` float32 (float64 for float64 input), differentiable w.r.t. the student
        logits. No reduction and no masking: the caller picks the tokens and reduces.

    Note: the public AdaKD release computes the skew forward KL as the cross-entropy
    −Σ p log(λp + (1−λ)q), i.e. without the teacher-entropy term Σ p log p. That has the same
    gradient but a value that is not a divergence (not 0 at q = p), which corrupts a
    loss-driven controller such as LATF; ``sfkl`` here is the true KL.
    """
    resolved = resolve_params(name, params)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape [..., V]"
        )
    if isinstance(temperature, Tensor):
        if temperature.dim() and temperature.shape != student_logits.shape[:-1]:
            raise ValueError(
                f"per-token temperature has shape {tuple(temperature.shape)}; "
                f"expected {tuple(student_logits.shape[:-1])} (the logits without V)"
            )
        temperature = temperature.detach()
    elif not temperature > 0:
        raise ValueError(f"temperature must be > 0 (got {temperature})")
    dtype = compute_dtype(student_logits, teacher_logits)
    logq = log_probs(student_logits, temperature, dtype)
    with torch.no_grad():
        logp = log_probs(teacher_logits.detach(), temperature, dtype)
    return _FORMULAS[name](logq, logp, **resolved)
