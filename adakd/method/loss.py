"""The AdaKD objective: a plug-and-play token-level distillation loss (docs/method.md §4).

    L_KD = (1/k) · Σ_{i ∈ selected} τ_i² · D( softmax(z_T,i / τ_i), softmax(z_S,i / τ_i) )
    loss = (1 − kd_ratio) · CE + kd_ratio · L_KD                    (loss = L_KD at kd_ratio = 1)

over the valid tokens (``mask``), with difficulty s (Hellinger at τ = 1, no gradient), the
top-k selection of LATF (k = max(1, floor(r·N)), pooled over the batch) and the IDTS
temperatures τ_i over the selected tokens. With ``ratio=1, idts=False`` this is exactly plain
token-level KD with D: mean over valid tokens of τ_base² · D at τ_base.

Table 5's other temperature strategies (adakd/method/temperature.py, docs/method.md §3.1) enter as
``learned_temperature`` (CTKD: one τ for every selected token, a 0-dim tensor whose gradient is
kept) and ``standardize`` (each token's logits z-scored over V, both models, before τ).
SFT (``kd_ratio=0``) needs no teacher: ``teacher_logits=None`` skips the teacher and the scoring.

Memory plan (V is large, so every ``[N, V]`` float32 tensor counts):
1. gather the valid rows once (a view when every position is valid) after a single host
   sync (``mask.nonzero()``), whose backward writes rows without atomics;
2. score difficulty without gradient, in row chunks (a fused compiled kernel on CUDA);
3. select, then compute D with gradient only on the k selected rows at their τ.
No ``[B, T, V]`` float32 softmax of the whole batch is ever built.

Naive equivalent (what this computes, for reading; do not use — it builds everything at full
size and lets gradient leak through s and τ unless detached)::

    p, q = softmax(z_T), softmax(z_S)                               # [B, T, V]
    s = sqrt(0.5 * ((p.sqrt() - q.sqrt())**2).sum(-1))[mask]       # [N]
    sel = topk(s, k); tau = idts(s[sel])                            # [k]
    loss = (tau**2 * D(z_S[mask][sel] / tau, z_T[mask][sel] / tau)).mean()
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .difficulty import DEFAULT_TOPK, INDICATORS, check_labels, score_tokens
from .divergences import divergence as divergence_fn
from .divergences import resolve_params
from .idts import idts_temperatures
from .latf import selection_count, top_indices
from .temperature import tempered_divergence

if TYPE_CHECKING:
    from .pooled_selection import PooledShare, TokenScores


@dataclass
class AdaKDOutput:
    """Result of ``adakd_loss``. Per-token fields cover the valid tokens in row-major order of
    ``mask`` (N = n_valid) and are detached.

    loss: scalar, differentiable w.r.t. the student logits only.
    kd: the AdaKD term L_KD (detached). ce: student cross-entropy on ``labels`` over all valid
    tokens (detached; NaN without labels). difficulty [N], selected [N] bool, temperature [N]
    (τ on selected tokens, NaN elsewhere). mean_temperature: mean τ over the selected tokens
    (NaN when none).
    """

    loss: Tensor
    kd: Tensor
    ce: Tensor
    difficulty: Tensor
    selected: Tensor
    temperature: Tensor
    n_valid: int
    n_selected: int

    @property
    def mean_temperature(self) -> float:
        """Mean τ over the selected tokens (NaN when none). Read lazily: reading it waits for
        the device, so the loss itself never blocks before ``backward`` is queued."""
        if self.n_selected == 0:
            return math.nan
        return float(torch.nanmean(self.temperature))


def adakd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor | None,
    mask: Tensor,
    ratio: float = 1.0,
    divergence: str = "rkl",
    c: float = 0.5,
    base_temperature: float = 1.0,
    idts: bool = True,
    indicator: str = "hellinger",
    divergence_params: dict | None = None,
    inverse: bool = False,
    labels: Tensor | None = None,
    kd_ratio: float = 1.0,
    chunk_size: int | None = None,
    topk: int = DEFAULT_TOPK,
    learned_temperature: Tensor | None = None,
    standardize: bool = False,
    pooled: PooledShare | None = None,
) -> AdaKDOutput:
    """AdaKD loss of one batch.

    Args:
        student_logits, teacher_logits: ``[B, T, V]`` (any leading shape ``[..., V]``), any
            float dtype; the math runs in float32. The teacher is detached. ``teacher_logits``
            may be None only at ``kd_ratio=0`` (SFT): the loss is then the cross-entropy alone,
            ``kd`` is 0, no token is scored or selected (difficulty and τ are NaN).
        mask: ``[B, T]`` bool, True on the positions that count (response tokens).
        ratio: LATF r ∈ (0, 1], the share of valid tokens kept (hardest first).
        divergence, divergence_params: the base divergence D and its parameter overrides.
        c, base_temperature, idts, inverse: IDTS strength, τ_base, on/off, and the inverse
            ablation τ = τ_base·exp(+c·ŝ). ``idts=False`` uses τ_base for every token.
        indicator: difficulty indicator (see ``token_difficulty``); ``ce`` uses ``labels``.
        labels: ``[B, T]`` next-token targets already aligned with the logits (e.g. from
            ``adakd.data.tokenize.next_token_targets``); read only where ``mask`` is True. With labels
            the cross-entropy is always computed (for logging); it enters the loss when
            ``kd_ratio < 1``.
        kd_ratio: weight of the KD term; 1 = pure KD, 0 = pure SFT.
        chunk_size: rows per difficulty-scoring chunk (default from the vocabulary size).
        topk: k of the ``topk`` (NMTKD rank-violation) indicator.
        learned_temperature: CTKD's τ, a 0-dim tensor (``CTKDTemperature(λ)``) used for every
            selected token in place of τ_base; its gradient is kept. Needs ``idts=False``.
        standardize: z-score each token's logits over V (both models) before the temperature.
        pooled: this batch's share of a selection over a larger pool (adakd/method/pooled_selection.py,
            ``latf_pool = "step"``): its selected tokens and τ replace this batch's own top-k
            (``ratio``, ``idts``, ``c``, ``inverse`` and ``base_temperature`` were applied to the
            pool), and the KD term is Σ τ²·D over them divided by ``pooled.kd_denominator``.

    An all-masked batch gives loss 0 (connected to the graph, zero gradient), not NaN.

    Note: the public release does not detach the difficulty and the temperatures; here both
    are constants (as in the paper), so the gradient is exactly that of the formula above with
    the selection and τ fixed.
    """
    _validate(student_logits, teacher_logits, mask, ratio, divergence, c, base_temperature, indicator, labels, kd_ratio)
    if learned_temperature is not None and (idts or learned_temperature.dim() != 0):
        raise ValueError("learned_temperature (CTKD) is one 0-dim τ for every token and replaces IDTS: pass idts=False")
    params = resolve_params(divergence, divergence_params)
    vocab = student_logits.shape[-1]
    mask = mask.bool()
    if teacher_logits is None:
        return _sft_output(student_logits, mask, labels)
    if mask.dim() == 0:  # a single position [V]: give it a leading dim so indexing is uniform
        student_logits, teacher_logits, mask = student_logits[None], teacher_logits[None], mask[None]
        labels = labels[None] if labels is not None else None
    # One host sync for the whole call: the positions of the valid tokens (row-major order).
    positions = mask.nonzero().unbind(1)
    n_valid = positions[0].numel()
    if n_valid == mask.numel():  # every position counts: a view when the logits are contiguous
        s_valid = student_logits.reshape(-1, vocab)
        t_valid = teacher_logits.detach().reshape(-1, vocab)
        targets = labels.reshape(-1) if labels is not None else None
    else:
        s_valid = take_rows(student_logits, positions)
        t_valid = teacher_logits.detach()[positions]
        targets = labels[positions] if labels is not None else None
    if targets is not None:
        targets = check_labels(targets, torch.Size([n_valid]), vocab, "ce")

    # At kd_ratio = 1 the cross-entropy is only logged: take it from the scoring pass for free.
    log_ce_from_scores = targets is not None and kd_ratio == 1.0
    nll: Tensor | None
    if pooled is None:
        difficulty, nll = score_tokens(
            s_valid, t_valid, indicator, targets, chunk_size=chunk_size, with_nll=log_ce_from_scores, topk=topk
        )
    else:  # scored with the pool: no second scoring pass
        pooled.check(n_valid, idts, learned_temperature)
        difficulty, nll = pooled.scores.difficulty, None
    if n_valid == 0:
        return _empty_output(s_valid, difficulty, targets is not None)

    if pooled is None:
        plan = select_and_temper(difficulty, ratio, idts, base_temperature, c, inverse, learned_temperature)
    else:
        plan = pooled.plan_with(learned_temperature)
    if plan.idx is None:  # r = 1: every valid row, no copy
        s_sel, t_sel = s_valid, t_valid
    else:
        s_sel, t_sel = take_rows(s_valid, (plan.idx,)), t_valid[plan.idx]
    tau_arg, tau_sq = plan.tau_arg, plan.tau_sq

    with torch.set_grad_enabled(torch.is_grad_enabled() and kd_ratio > 0):
        if standardize or learned_temperature is not None:
            per_token = tempered_divergence(divergence, s_sel, t_sel, tau_arg, standardize=standardize, **params)
        else:
            per_token = divergence_fn(divergence, s_sel, t_sel, tau_arg, **params)
        if pooled is None:
            kd = (tau_sq * per_token).mean()
        else:  # a share of the pool's mean (a share may hold no selected token: then 0)
            kd = (tau_sq * per_token).sum() / pooled.kd_denominator

    if kd_ratio == 1.0:
        loss = kd
        if pooled is not None and log_ce_from_scores and pooled.scores.nll_sum is not None:
            ce = (pooled.scores.nll_sum / n_valid).to(kd.dtype)
        else:
            ce = nll.mean() if nll is not None else kd.new_tensor(math.nan)
    else:
        if targets is None:  # _validate refuses kd_ratio < 1 without labels
            raise ValueError("labels are needed when kd_ratio < 1")
        ce = torch.nn.functional.cross_entropy(s_valid.to(kd.dtype), targets)
        loss = (1.0 - kd_ratio) * ce + (kd_ratio * kd if kd_ratio > 0 else 0.0)
    return AdaKDOutput(
        loss=loss,
        kd=kd.detach(),
        ce=ce.detach(),
        difficulty=difficulty,
        selected=plan.selected,
        temperature=plan.temperature,
        n_valid=n_valid,
        n_selected=plan.n_selected,
    )


@dataclass
class TokenPlan:
    """Which valid tokens are distilled and at which temperature (the middle of the loss).

    idx: ``[k]`` ascending row indices of the selected tokens, or None when all N are selected.
    selected ``[N]`` bool; temperature ``[N]`` (τ on selected tokens, NaN elsewhere).
    tau_arg: what the divergence receives as τ — ``[k]`` per-token (IDTS), a 0-dim tensor with
    gradient (CTKD) or the float τ_base; tau_sq: its square (the τ² factor).
    """

    idx: Tensor | None
    selected: Tensor
    temperature: Tensor
    tau_arg: Tensor | float
    tau_sq: Tensor | float
    n_selected: int


def select_and_temper(
    difficulty: Tensor,
    ratio: float,
    idts: bool,
    base_temperature: float,
    c: float,
    inverse: bool,
    learned_temperature: Tensor | None,
) -> TokenPlan:
    """LATF's top-k of ``difficulty [N]`` (k = max(1, floor(r·N)), pooled) and the τ of the
    selected tokens: IDTS τ_i = τ_base·exp(∓c·ŝ_i) over the selected ones, CTKD's learned τ,
    or τ_base (docs/method.md §2-3). Shared by ``adakd_loss`` and the hidden-state loss."""
    n_valid = difficulty.numel()
    n_selected = selection_count(n_valid, ratio)
    selected = torch.zeros(n_valid, dtype=torch.bool, device=difficulty.device)
    idx: Tensor | None = None
    if n_selected == n_valid:
        selected.fill_(True)
        d_sel = difficulty
    else:
        idx = top_indices(difficulty, n_selected)  # ascending: selected rows keep their order
        selected[idx] = True
        d_sel = difficulty[idx]
    temperature = torch.full((n_valid,), math.nan, dtype=difficulty.dtype, device=difficulty.device)
    tau_arg: Tensor | float
    tau_sq: Tensor | float
    if idts:
        tau_sel = idts_temperatures(d_sel, base_temperature, c, inverse=inverse)
        tau_arg, tau_sq = tau_sel, tau_sel.square()
        if idx is None:
            temperature.copy_(tau_sel)
        else:
            temperature.index_copy_(0, idx, tau_sel)
    elif learned_temperature is not None:  # CTKD: one τ with gradient for every selected token
        tau_arg = learned_temperature.to(difficulty.dtype)
        tau_sq = tau_arg.square()
        temperature.masked_fill_(selected, tau_arg.detach())
    else:
        tau_arg, tau_sq = float(base_temperature), float(base_temperature) ** 2
        temperature.masked_fill_(selected, float(base_temperature))
    return TokenPlan(idx, selected, temperature, tau_arg, tau_sq, n_selected)


class _TakeRows(torch.autograd.Function):
    """``x[index]`` for an index tuple over the leading dims that names each row at most once.

    Its backward writes the gradient rows with ``index_put_`` without accumulation (unique
    rows: no atomics, no sort, deterministic), where plain advanced indexing would accumulate.
    """

    @staticmethod
    def forward(ctx, x: Tensor, *index: Tensor) -> Tensor:
        ctx.save_for_backward(*index)
        ctx.shape = x.shape
        return x[index]

    @staticmethod
    def backward(ctx, grad: Tensor):
        index = ctx.saved_tensors
        return (grad.new_zeros(ctx.shape).index_put_(index, grad), *(None for _ in index))


def take_rows(x: Tensor, index: tuple[Tensor, ...]) -> Tensor:
    """``x[index]`` for unique rows, with a deterministic, atomics-free backward (``_TakeRows``)."""
    return _TakeRows.apply(x, *index) if x.requires_grad else x[index]


def token_scores(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    indicator: str = "hellinger",
    labels: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    topk: int = DEFAULT_TOPK,
) -> TokenScores:
    """The scoring pass of ``adakd_loss`` alone (no gradient): difficulty ``[N]`` of the valid
    tokens of ``mask`` (row-major) and Σ −log q(label) over them when ``labels`` are given — one
    part of a pooled selection (adakd/method/pooled_selection.py)."""
    from .pooled_selection import TokenScores

    mask = mask.bool()
    if mask.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}; expected {tuple(student_logits.shape[:-1])} (the logits without V)"
        )
    with torch.no_grad():
        positions = mask.nonzero().unbind(1)
        targets = labels[positions] if labels is not None else None
        difficulty, nll = score_tokens(
            student_logits[positions],
            teacher_logits[positions],
            indicator,
            targets,
            chunk_size=chunk_size,
            with_nll=targets is not None,
            topk=topk,
        )
    return TokenScores(difficulty, nll.sum() if nll is not None else None)


def _sft_output(student_logits: Tensor, mask: Tensor, labels: Tensor | None) -> AdaKDOutput:
    """SFT without a teacher: loss = mean over the valid tokens of −log q(label); kd = 0."""
    if labels is None:  # _validate refuses SFT without labels
        raise ValueError("SFT (no teacher logits) needs labels")
    vocab, rows = student_logits.shape[-1], mask.reshape(-1)
    logits, targets = student_logits.reshape(-1, vocab)[rows], labels.reshape(-1)[rows]
    n_valid = targets.numel()
    targets = check_labels(targets, torch.Size([n_valid]), vocab, "ce")
    dtype = torch.float64 if student_logits.dtype == torch.float64 else torch.float32
    if n_valid == 0:
        loss = logits.to(dtype).sum() * 0.0
    else:
        loss = torch.nn.functional.cross_entropy(logits.to(dtype), targets)
    nan = torch.full((n_valid,), math.nan, dtype=dtype, device=logits.device)
    return AdaKDOutput(
        loss=loss,
        kd=loss.new_zeros(()).detach(),
        ce=loss.detach(),
        difficulty=nan,
        selected=torch.zeros(n_valid, dtype=torch.bool, device=logits.device),
        temperature=nan.clone(),
        n_valid=n_valid,
        n_selected=0,
    )


def _empty_output(s_valid: Tensor, difficulty: Tensor, with_labels: bool) -> AdaKDOutput:
    """No valid token: loss 0 that still backpropagates (zero gradient), never NaN."""
    loss = s_valid.to(difficulty.dtype).sum() * 0.0  # sum over an empty [0, V] is exactly 0
    zero = loss.detach().clone()
    return AdaKDOutput(
        loss=loss,
        kd=zero,
        ce=zero.clone() if with_labels else zero.new_tensor(math.nan),
        difficulty=difficulty,
        selected=torch.zeros_like(difficulty, dtype=torch.bool),
        temperature=difficulty.clone(),
        n_valid=0,
        n_selected=0,
    )


def _validate(
    student_logits, teacher_logits, mask, ratio, divergence, c, base_temperature, indicator, labels, kd_ratio
) -> None:
    check_settings(teacher_logits is None, mask, ratio, divergence, c, base_temperature, indicator, labels, kd_ratio)
    if teacher_logits is not None and student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} must have the same shape [B, T, V]"
        )
    if mask.shape != student_logits.shape[:-1]:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}; expected {tuple(student_logits.shape[:-1])} (the logits without V)"
        )


def check_settings(
    no_teacher: bool,
    mask: Tensor,
    ratio: float,
    divergence: str,
    c: float,
    base_temperature: float,
    indicator: str,
    labels: Tensor | None,
    kd_ratio: float,
) -> None:
    """The checks of the loss's settings shared by ``adakd_loss`` and the hidden-state loss;
    ValueError naming the argument and what it must be."""
    if no_teacher and (kd_ratio != 0.0 or labels is None):
        raise ValueError("the teacher may be None only for SFT: kd_ratio=0 with labels")
    if mask.dtype.is_floating_point:
        raise ValueError(f"mask must be bool (or 0/1 integers), got dtype {mask.dtype}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1] (got {ratio})")
    if not base_temperature > 0:
        raise ValueError(f"base_temperature must be > 0 (got {base_temperature})")
    if not c >= 0:
        raise ValueError(f"IDTS strength c must be >= 0 (got {c})")
    if indicator not in INDICATORS:
        raise ValueError(f"unknown difficulty indicator {indicator!r}; valid: {', '.join(INDICATORS)}")
    if not 0.0 <= kd_ratio <= 1.0:
        raise ValueError(f"kd_ratio must be in [0, 1] (got {kd_ratio}); 1 = pure KD")
    if labels is None and (kd_ratio < 1.0 or indicator == "ce"):
        raise ValueError("labels are needed when kd_ratio < 1 or indicator='ce'")
    if labels is not None and labels.shape != mask.shape:
        raise ValueError(f"labels have shape {tuple(labels.shape)}; expected {tuple(mask.shape)} like mask")
