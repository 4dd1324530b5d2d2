"""Token difficulty: one number per token that drives LATF selection and IDTS temperatures.

The paper's indicator is the Hellinger distance between the teacher and student next-token
distributions at τ = 1 (METHOD.md §1):

    s_i = (1/√2) · ‖√p_i − √q_i‖₂ = sqrt( max(0, 1 − Σ_v √(p_i(v) q_i(v))) )  ∈ [0, 1]

The alternatives of the paper's indicator ablation (Table 3) are forward KL, reverse KL,
Jensen–Shannon (symmetric, λ = ½), the student's cross-entropy against the label and the
student's entropy. All are computed without gradient, at τ = 1, in float32, in row chunks so
that only a bounded slice of ``[N, V]`` float32 exists at a time.

Note: the public release does not detach the score; the paper does. A non-detached score
sends gradient through √q and the median (tens of percent of the gradient, NaN at q = 0).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .divergences import LOG_FLOOR, compute_dtype, divergence_from_log_probs

INDICATORS = ("hellinger", "fkl", "rkl", "jsd", "ce", "entropy")
# Elements per scoring work buffer (two buffers). CPU: ≈ 4 MB of float32 stays cache-friendly;
# CUDA: ≈ 64 MB keeps the number of kernel launches small.
CHUNK_ELEMENTS = {"cpu": 1 << 20, "cuda": 1 << 24}


def default_chunk_rows(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per scoring chunk: ``CHUNK_ELEMENTS[device type] // V`` (at least 1)."""
    budget = CHUNK_ELEMENTS["cuda" if torch.device(device).type == "cuda" else "cpu"]
    return max(1, budget // max(1, vocab_size))


def hellinger(student_logits: Tensor, teacher_logits: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Hellinger distance at τ = 1, ``[..., V] -> [...]`` float32 in [0, 1], no gradient.

    Computed as sqrt(½ Σ_v (√p − √q)²) with √p = exp(½ log p), which equals
    sqrt(1 − Σ√(pq)) but has no cancellation: identical inputs give exactly 0.
    """
    return token_difficulty(student_logits, teacher_logits, "hellinger", chunk_size=chunk_size)


def token_difficulty(student_logits: Tensor, teacher_logits: Tensor, indicator: str = "hellinger",
                     labels: Tensor | None = None, *, chunk_size: int | None = None) -> Tensor:
    """Per-token difficulty ``[..., V] -> [...]`` (float32, no gradient, τ = 1).

    indicator: ``hellinger`` (default, ∈ [0, 1]); ``fkl`` KL(p‖q); ``rkl`` KL(q‖p); ``jsd``
    the symmetric Jensen–Shannon divergence (λ = ½, ∈ [0, log 2]); ``ce`` −log q(label)
    (needs ``labels [...]`` of vocabulary ids); ``entropy`` −Σ q log q of the student.
    ``chunk_size`` rows are scored at a time (default ``default_chunk_rows(V)``).
    """
    difficulty, _ = score_tokens(student_logits, teacher_logits, indicator, labels, chunk_size=chunk_size)
    return difficulty


@torch.no_grad()
def score_tokens(student_logits: Tensor, teacher_logits: Tensor, indicator: str = "hellinger",
                 labels: Tensor | None = None, *, chunk_size: int | None = None,
                 with_nll: bool = False) -> tuple[Tensor, Tensor | None]:
    """Difficulty ``[...]`` and, with ``with_nll``, the student's −log q(label) ``[...]``.

    One pass over the rows serves both, so the loss can log the cross-entropy for free.
    """
    if indicator not in INDICATORS:
        raise ValueError(f"unknown difficulty indicator {indicator!r}; valid: {', '.join(INDICATORS)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have the same shape [..., V]")
    need_labels = indicator == "ce" or with_nll
    lead, vocab = student_logits.shape[:-1], student_logits.shape[-1]
    if need_labels:
        labels = check_labels(labels, lead, vocab, indicator)
    rows = chunk_size or default_chunk_rows(vocab, student_logits.device)
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1 (got {chunk_size})")

    dtype = compute_dtype(student_logits, teacher_logits)
    s = student_logits.detach().reshape(-1, vocab)
    t = teacher_logits.detach().reshape(-1, vocab)
    n_rows = s.shape[0]
    rows = min(rows, max(1, n_rows))
    flat_labels = labels.reshape(-1) if need_labels else None
    difficulty = torch.empty(n_rows, dtype=dtype, device=s.device)
    nll = torch.empty_like(difficulty) if with_nll else None
    # Two work buffers reused by every chunk: no per-chunk allocation of [rows, V] tensors
    # (on CPU each fresh large allocation costs page faults; on CUDA it is free either way).
    buf_q = torch.empty(rows, vocab, dtype=dtype, device=s.device)
    buf_p = torch.empty_like(buf_q)
    for i in range(0, n_rows, rows):
        j = min(i + rows, n_rows)
        logq = torch.log_softmax(s[i:j].to(dtype), dim=-1, out=buf_q[: j - i])
        logp = torch.log_softmax(t[i:j].to(dtype), dim=-1, out=buf_p[: j - i])
        chunk_nll = None
        if need_labels:
            chunk_nll = -logq.gather(-1, flat_labels[i:j, None]).squeeze(-1)
            if with_nll:
                nll[i:j] = chunk_nll
        difficulty[i:j] = _indicator(indicator, logq, logp, chunk_nll)
    return difficulty.reshape(lead), (nll.reshape(lead) if with_nll else None)


def _indicator(indicator: str, logq: Tensor, logp: Tensor, nll: Tensor | None) -> Tensor:
    """One chunk's scores from log-probabilities (−inf where a logit is −inf). Overwrites
    ``logq``/``logp``: they are the chunk's work buffers."""
    if indicator == "hellinger":  # exp(½·−inf) = 0: masked entries need no special care
        sq = logq.mul_(0.5).exp_()  # √q, in place
        sp = logp.mul_(0.5).exp_()  # √p, in place
        h2 = 0.5 * sq.sub_(sp).square_().sum(-1)
        return h2.clamp_(0.0, 1.0).sqrt_()
    if indicator == "ce":
        return nll
    # The KL-type scores multiply probabilities by log-ratios: floor −inf first so that
    # 0·log 0 terms are 0·finite = 0 instead of NaN (see divergences.LOG_FLOOR).
    logq.clamp_min_(LOG_FLOOR)
    logp.clamp_min_(LOG_FLOOR)
    if indicator in ("fkl", "rkl"):
        return divergence_from_log_probs(indicator, logq, logp)
    if indicator == "jsd":
        return divergence_from_log_probs("jsd", logq, logp, lam=0.5)
    return -(logq.exp() * logq).sum(-1)  # student entropy


def check_labels(labels: Tensor | None, lead: torch.Size, vocab: int, indicator: str) -> Tensor:
    """Validate next-token ids ``[...]`` for scoring; returns them as int64."""
    if labels is None:
        raise ValueError(f"indicator {indicator!r} needs labels (the next-token ids, shape {tuple(lead)})")
    if labels.shape != lead:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(lead)} (the logits without V)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer token ids (got dtype {labels.dtype})")
    if labels.numel() and bool(((labels < 0) | (labels >= vocab)).any()):
        raise ValueError(f"labels must be token ids in [0, {vocab}) at every scored position; "
                         "drop -100 (ignored) positions with the mask first")
    return labels.long()
