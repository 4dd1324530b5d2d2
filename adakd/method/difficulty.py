"""Token difficulty: one number per token that drives LATF selection and IDTS temperatures.

The paper's indicator is the Hellinger distance between the teacher and student next-token
distributions at τ = 1 (docs/method.md §1):

    s_i = (1/√2) · ‖√p_i − √q_i‖₂ = sqrt( max(0, 1 − Σ_v √(p_i(v) q_i(v))) )  ∈ [0, 1]

The alternatives of the paper's indicator ablation (Table 3) are forward KL, reverse KL,
Jensen–Shannon (symmetric, λ = ½), the student's cross-entropy against the label, the
student's entropy and NMTKD's top-k rank violation (adakd/method/rank_violation.py). All are
computed without gradient, at τ = 1, in float32, in row chunks so that only a bounded slice
of ``[N, V]`` float32 exists at a time.

On CUDA the Hellinger score (and the logged cross-entropy) runs as one ``torch.compile``d
expression (``hellinger_rows``) that streams the logits without temporaries: on an H200 it
cut the scoring of 2,048 × 49,152 bf16 logits from 3.3 ms (eager) to about 1 ms. The first
call compiles (seconds); ``ADAKD_COMPILE=0`` keeps everything eager, and any compiler
failure falls back to eager with a warning.

Note: the public release does not detach the score; the paper does. A non-detached score
sends gradient through √q and the median (tens of percent of the gradient, NaN at q = 0).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from adakd.names import INDICATORS

from .divergences import LOG_FLOOR, compute_dtype, divergence_from_log_probs
from .rank_violation import rank_violation

log = logging.getLogger(__name__)

DEFAULT_TOPK = 5  # k of the "topk" indicator: the paper's (the public release passes 10)
# Elements per scoring work buffer (there are two): ≈ 64 MB of float32. Large enough for few
# kernel launches on CUDA; on CPU, smaller chunks measured no faster (2-core EPYC, V = 49,152).
CHUNK_ELEMENTS = 1 << 24
FUSED_CHUNK_ELEMENTS = 1 << 28  # the compiled scorer streams the logits: chunks only bound launches


def default_chunk_rows(vocab_size: int) -> int:
    """Rows per scoring chunk: ``CHUNK_ELEMENTS // V`` (at least 1)."""
    return max(1, CHUNK_ELEMENTS // max(1, vocab_size))


def hellinger(student_logits: Tensor, teacher_logits: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """Hellinger distance at τ = 1, ``[..., V] -> [...]`` float32 in [0, 1], no gradient.

    Computed as sqrt(½ Σ_v (√p − √q)²) with √p = exp(½ log p), which equals
    sqrt(1 − Σ√(pq)) but has no cancellation: identical inputs give exactly 0.
    """
    return token_difficulty(student_logits, teacher_logits, "hellinger", chunk_size=chunk_size)


def token_difficulty(
    student_logits: Tensor,
    teacher_logits: Tensor,
    indicator: str = "hellinger",
    labels: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    topk: int = DEFAULT_TOPK,
) -> Tensor:
    """Per-token difficulty ``[..., V] -> [...]`` (float32, no gradient, τ = 1).

    indicator: ``hellinger`` (default, ∈ [0, 1]); ``fkl`` KL(p‖q); ``rkl`` KL(q‖p); ``jsd``
    the symmetric Jensen–Shannon divergence (λ = ½, ∈ [0, log 2]); ``ce`` −log q(label)
    (needs ``labels [...]`` of vocabulary ids); ``entropy`` −Σ q log q of the student;
    ``topk`` NMTKD's top-k rank violation with k = ``topk`` (see ``rank_violation``).
    ``chunk_size`` rows are scored at a time (default ``default_chunk_rows(V)``).
    """
    difficulty, _ = score_tokens(student_logits, teacher_logits, indicator, labels, chunk_size=chunk_size, topk=topk)
    return difficulty


@torch.no_grad()
def score_tokens(
    student_logits: Tensor,
    teacher_logits: Tensor,
    indicator: str = "hellinger",
    labels: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    with_nll: bool = False,
    topk: int = DEFAULT_TOPK,
) -> tuple[Tensor, Tensor | None]:
    """Difficulty ``[...]`` and, with ``with_nll``, the student's −log q(label) ``[...]``.

    One pass over the rows serves both, so the loss can log the cross-entropy for free.
    """
    if indicator not in INDICATORS:
        raise ValueError(f"unknown difficulty indicator {indicator!r}; valid: {', '.join(INDICATORS)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape [..., V]"
        )
    need_labels = indicator == "ce" or with_nll
    lead, vocab = student_logits.shape[:-1], student_logits.shape[-1]
    flat_labels = check_labels(labels, lead, vocab, indicator).reshape(-1) if need_labels else None
    if indicator == "topk" and (isinstance(topk, bool) or int(topk) != topk or topk < 1):
        raise ValueError(f"the topk indicator's k must be an integer >= 1 (got {topk!r})")
    rows = chunk_size or default_chunk_rows(vocab)
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1 (got {chunk_size})")

    dtype = compute_dtype(student_logits, teacher_logits)
    s = student_logits.detach().reshape(-1, vocab)
    t = teacher_logits.detach().reshape(-1, vocab)
    n_rows = s.shape[0]
    rows = min(rows, max(1, n_rows))
    difficulty = torch.empty(n_rows, dtype=dtype, device=s.device)
    nll = torch.empty_like(difficulty) if with_nll else None
    fused = _fused_hellinger(s) if indicator == "hellinger" else None
    if fused is not None:  # CUDA: one compiled expression; it keeps no [rows, V] temporaries
        rows = max(rows, FUSED_CHUNK_ELEMENTS // max(1, vocab))
        for i in range(0, n_rows, rows):
            j = min(i + rows, n_rows)
            # here the labels are given exactly when with_nll (hellinger needs none)
            h, chunk_nll = fused(s[i:j], t[i:j], flat_labels[i:j] if flat_labels is not None else None)
            if j - i == n_rows:  # one chunk: keep the result, skip a copy
                difficulty, nll = h.to(dtype), (chunk_nll.to(dtype) if chunk_nll is not None else None)
                break
            difficulty[i:j] = h
            if nll is not None:
                if chunk_nll is None:  # hellinger_rows returns −log q whenever it is given labels
                    raise RuntimeError("the fused Hellinger scorer returned no −log q for its labels")
                nll[i:j] = chunk_nll
        return difficulty.reshape(lead), (nll.reshape(lead) if nll is not None else None)

    # Eager: two work buffers reused by every chunk, so no [rows, V] tensor is allocated per
    # chunk (on CPU each fresh large allocation costs page faults).
    buf_q = torch.empty(rows, vocab, dtype=dtype, device=s.device)
    buf_p = torch.empty_like(buf_q)
    for i in range(0, n_rows, rows):
        j = min(i + rows, n_rows)
        logq = torch.log_softmax(s[i:j], dim=-1, dtype=dtype, out=buf_q[: j - i])
        logp = torch.log_softmax(t[i:j], dim=-1, dtype=dtype, out=buf_p[: j - i])
        chunk_nll = None
        if flat_labels is not None:  # need_labels
            chunk_nll = -logq.gather(-1, flat_labels[i:j, None]).squeeze(-1)
            if nll is not None:  # with_nll
                nll[i:j] = chunk_nll
        difficulty[i:j] = _indicator(indicator, logq, logp, chunk_nll, topk)
    return difficulty.reshape(lead), (nll.reshape(lead) if nll is not None else None)


def _indicator(indicator: str, logq: Tensor, logp: Tensor, nll: Tensor | None, topk: int) -> Tensor:
    """One chunk's scores from log-probabilities (−inf where a logit is −inf). Overwrites
    ``logq``/``logp``: they are the chunk's work buffers."""
    if indicator == "hellinger":  # exp(½·−inf) = 0: masked entries need no special care
        sq = logq.mul_(0.5).exp_()  # √q, in place
        sp = logp.mul_(0.5).exp_()  # √p, in place
        h2 = 0.5 * sq.sub_(sp).square_().sum(-1)
        return h2.clamp_(0.0, 1.0).sqrt_()
    if indicator == "ce":
        if nll is None:
            raise ValueError("the ce indicator needs the labels' −log q (score_tokens passes it)")
        return nll
    if indicator == "topk":
        return rank_violation(logq, logp, topk)
    # The KL-type scores multiply probabilities by log-ratios: floor −inf first so that
    # 0·log 0 terms are 0·finite = 0 instead of NaN (see divergences.LOG_FLOOR).
    logq.clamp_min_(LOG_FLOOR)
    logp.clamp_min_(LOG_FLOOR)
    if indicator in ("fkl", "rkl"):
        return divergence_from_log_probs(indicator, logq, logp)
    if indicator == "jsd":
        return divergence_from_log_probs("jsd", logq, logp, lam=0.5)
    return -(logq.exp() * logq).sum(-1)  # student entropy


def hellinger_rows(s: Tensor, t: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Hellinger ``[R, V] -> [R]`` (and −log q(label) when ``labels [R]`` is given), written
    as one expression for ``torch.compile`` to fuse into a few passes over the logits:

        √q = exp(½ (z_S − logsumexp z_S)),  √p likewise,  s = sqrt(½ Σ (√p − √q)²)

    The eager chunk loop of ``score_tokens`` computes the same numbers with in-place ops.
    """
    dtype = torch.float64 if s.dtype == torch.float64 else torch.float32
    s, t = s.to(dtype), t.to(dtype)
    lse_s = torch.logsumexp(s, dim=-1, keepdim=True)
    lse_t = torch.logsumexp(t, dim=-1, keepdim=True)
    diff = torch.exp(0.5 * (s - lse_s)) - torch.exp(0.5 * (t - lse_t))
    h = (0.5 * (diff * diff).sum(-1)).clamp(0.0, 1.0).sqrt()
    if labels is None:
        return h, None
    return h, lse_s.squeeze(-1) - s.gather(-1, labels[:, None]).squeeze(-1)


RowScorer = Callable[[Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor | None]]  # hellinger_rows' signature
_compiled: RowScorer | Literal[False] | None = None  # the compiled hellinger_rows, False once compiling failed


def _fused_hellinger(s: Tensor) -> RowScorer | None:
    """The compiled scorer for CUDA tensors, or None (CPU, ADAKD_COMPILE=0, or no compiler).

    Why: in eager mode the scoring costs ~7 full passes over [N, V] float32 (≈ 0.7× a plain
    KD forward+backward on an H200); fused it reads the logits about twice.
    """
    global _compiled
    if not s.is_cuda or _compiled is False or os.environ.get("ADAKD_COMPILE", "1") == "0":
        return None
    if _compiled is None:
        try:
            _compiled = torch.compile(hellinger_rows, dynamic=True)
        except Exception as err:  # noqa: BLE001 - any compiler failure means "use eager"
            log.warning("torch.compile unavailable (%s); difficulty scoring runs eagerly", err)
            _compiled = False
            return None

    def run(s_rows: Tensor, t_rows: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor | None]:
        global _compiled
        if _compiled:  # False once an earlier chunk failed: eager from then on, without a warning per chunk
            try:
                return _compiled(s_rows, t_rows, labels)
            except Exception as err:  # noqa: BLE001
                log.warning("compiled difficulty scoring failed (%s); falling back to eager", err)
                _compiled = False
        return hellinger_rows(s_rows, t_rows, labels)

    return run


def check_labels(labels: Tensor | None, lead: torch.Size, vocab: int, indicator: str) -> Tensor:
    """Validate next-token ids ``[...]`` for scoring; returns them as int64."""
    if labels is None:
        raise ValueError(f"indicator {indicator!r} needs labels (the next-token ids, shape {tuple(lead)})")
    if labels.shape != lead:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(lead)} (the logits without V)")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer token ids (got dtype {labels.dtype})")
    if labels.numel() and bool(((labels < 0) | (labels >= vocab)).any()):
        raise ValueError(
            f"labels must be token ids in [0, {vocab}) at every scored position; "
            "drop -100 (ignored) positions with the mask first"
        )
    return labels.long()
