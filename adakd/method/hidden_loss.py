"""AdaKD from hidden states: ``adakd_loss`` without the ``[N, V]`` logits (docs/method.md §10).

Each model's logits are its output head applied to its last hidden state:

    z = head(h) = cap · tanh(u / cap),   u = scale · (h Wᵀ + b)     (no cap: z = u)

``adakd_loss_from_hidden`` takes the hidden states ``[B, T, H]`` and the two heads and returns
the same ``AdaKDOutput`` as ``adakd_loss`` on the materialised logits, in three steps over row
chunks, so at most one chunk's ``[rows, V]`` logits exist at a time:

1. scoring, no gradient: every valid row's z_S and z_T, its difficulty and its −log q(label);
   with ``kd_ratio < 1`` the cross-entropy's gradient too (it covers every valid token);
2. LATF's selection and the temperatures, exactly as ``adakd_loss`` (``select_and_temper``);
3. distillation: for each chunk of the k selected rows, z_S and z_T again, τ²·D and its
   gradient with respect to u by autograd on the chunk alone; then ∂h = ∂u·W, ∂W += ∂uᵀ·h,
   ∂b += Σ ∂u by hand, accumulated in float32 (and ∂τ for CTKD's learned temperature).

The gradients are computed during the forward pass and handed to autograd by
``_PrecomputedGradient``, whose backward scales them by the incoming gradient: the approach of
fused linear + cross-entropy kernels. Only the selected tokens pay for a gradient.

Cost in matrix products of N·H·V: scoring 2 (both heads), distillation 4·r (both heads again,
∂h, ∂W), so 4 at r = 0.5, the same as materialised plain KD (two heads, ∂h, ∂W), with half the
softmax and divergence work and no ``[N, V]`` buffers. On a CPU the scoring pass also keeps u_S
and z_T of the hardest rows seen so far (a streaming top-k over at most ``cache_rows`` rows,
default four chunks), and step 3 takes them from there instead of running the heads again: the
selected rows that fit then cost 2 products instead of 4 (3 in all at r = 0.5), for at most
``cache_rows`` more rows of logits per model. The cache changes no value: a selected row not in
it is recomputed. It is off on accelerators by default, where keeping it needs a host sync per
chunk (the trainer's step allows one per micro-batch). benchmarks/bench_hidden_loss.py measures it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .difficulty import DEFAULT_TOPK, check_labels, default_chunk_rows, score_tokens
from .divergences import divergence as divergence_fn
from .divergences import resolve_params
from .latf import selection_count
from .lm_head import LMHead
from .loss import AdaKDOutput, TokenPlan, check_settings, select_and_temper, take_rows
from .temperature import tempered_divergence

if TYPE_CHECKING:
    from .pooled_selection import PooledShare, TokenScores


def adakd_loss_from_hidden(
    student_hidden: Tensor,
    teacher_hidden: Tensor | None,
    mask: Tensor,
    student_head: LMHead,
    teacher_head: LMHead | None,
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
    cache_rows: int | None = None,
) -> AdaKDOutput:
    """AdaKD loss of one batch from the models' last hidden states (see the module docstring).

    Args:
        student_hidden: ``[B, T, H_S]`` (any leading shape ``[..., H_S]``), the student's last
            hidden state (after the final norm: what its head reads); gradient flows to it and
            to ``student_head``'s weight and bias.
        teacher_hidden: ``[B, T, H_T]``, detached; None only for SFT (``kd_ratio=0``).
        mask: ``[B, T]`` bool, True on the positions that count.
        student_head, teacher_head: the heads (``LMHead.of(model)``); their vocabularies match.
        chunk_size: rows per chunk in both passes (default ``default_chunk_rows(V)``, about
            64 MB of float32 logits per model and chunk).
        pooled: this batch's share of a step-pooled selection (``adakd_loss``'s argument): the
            scoring pass is skipped (at kd_ratio < 1 it runs for the cross-entropy's gradient only)
            and the gradient pass covers the share's selected rows.
        cache_rows: how many of the hardest rows' logits the scoring pass keeps for the
            distillation pass (see the module docstring); None = four chunks on a CPU, 0
            elsewhere; 0 = none. Changes the time and memory, never the result.
        The other arguments are those of ``adakd_loss``, with the same meaning and defaults.

    Equal to ``adakd_loss(head_S(h_S), head_T(h_T), mask, ...)`` in value, per-token outputs and
    gradient, up to float rounding (row chunks sum in another order; tested to 1e-6 in float32).
    """
    if student_hidden.shape[:-1] != mask.shape:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)}; expected {tuple(student_hidden.shape[:-1])} "
            "(the hidden states without H)"
        )
    if teacher_hidden is not None and teacher_hidden.shape[:-1] != student_hidden.shape[:-1]:
        raise ValueError(
            f"student hidden states {tuple(student_hidden.shape)} and teacher hidden states "
            f"{tuple(teacher_hidden.shape)} must agree on [B, T]"
        )
    if teacher_hidden is not None and (teacher_head is None or teacher_head.vocab_size != student_head.vocab_size):
        found = None if teacher_head is None else teacher_head.vocab_size
        raise ValueError(f"the teacher's head has vocabulary {found}; the student's has {student_head.vocab_size}")
    check_settings(teacher_hidden is None, mask, ratio, divergence, c, base_temperature, indicator, labels, kd_ratio)
    if learned_temperature is not None and (idts or learned_temperature.dim() != 0):
        raise ValueError("learned_temperature (CTKD) is one 0-dim τ for every token and replaces IDTS: pass idts=False")
    params = resolve_params(divergence, divergence_params)
    vocab = student_head.vocab_size
    rows = chunk_size or default_chunk_rows(vocab)
    if rows < 1:
        raise ValueError(f"chunk_size must be >= 1 (got {chunk_size})")
    if cache_rows is not None and cache_rows < 0:
        raise ValueError(f"cache_rows must be >= 0 (got {cache_rows})")

    # The valid rows, gathered once (a view when every position counts), as in adakd_loss.
    mask = mask.bool()
    positions = mask.reshape(-1).nonzero().squeeze(1)  # the one host sync
    n_valid = positions.numel()
    h_s = student_hidden.reshape(-1, student_hidden.shape[-1])
    h_t = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1]) if teacher_hidden is not None else None
    targets = labels.reshape(-1) if labels is not None else None
    if n_valid != mask.numel():
        h_s = take_rows(h_s, (positions,))
        h_t = h_t[positions] if h_t is not None else None
        targets = targets[positions] if targets is not None else None
    if targets is not None:
        targets = check_labels(targets, torch.Size([n_valid]), vocab, "ce")

    weight = student_head.weight.to(student_head.dtype or student_head.weight.dtype)  # differentiable cast
    bias = student_head.bias.to(weight.dtype) if student_head.bias is not None else None
    s_head = replace(student_head, weight=weight, bias=bias)
    tau_input = None
    if learned_temperature is not None:
        tau_input = learned_temperature.to(torch.float64 if h_s.dtype == torch.float64 else torch.float32)
    wanted = torch.is_grad_enabled() and any(x is not None and x.requires_grad for x in (h_s, weight, bias, tau_input))
    grads = _Gradients.zeros(h_s, weight, bias, tau_input) if wanted else None

    dtype = torch.float64 if h_s.dtype == torch.float64 else torch.float32
    if pooled is not None:
        pooled.check(n_valid, idts, learned_temperature)
        n_selected = pooled.plan.n_selected
        kd_denominator = pooled.kd_denominator
    else:
        n_selected = selection_count(n_valid, ratio) if n_valid else 0
        kd_denominator = max(n_selected, 1)
    task = _Task(s_head, teacher_head, targets, indicator, topk, divergence, params, standardize, grads, dtype)
    ce_weight = (1.0 - kd_ratio) / max(n_valid, 1)
    kd_weight = kd_ratio / kd_denominator
    with torch.autocast(h_s.device.type, enabled=False):  # the dtypes are chosen here, not by autocast
        if pooled is not None and h_t is not None and teacher_head is not None:
            plan = pooled.plan_with(tau_input)
            difficulty = pooled.scores.difficulty
            if kd_ratio < 1.0:  # the cross-entropy's gradient covers every valid row
                scored = _pass(h_s, None, task, rows, ce_weight, kd_weight, score=True, plan=None)
            else:  # the CE only logged: from the pool's scoring pass
                nll_sum = pooled.scores.nll_sum
                zero = torch.zeros((), dtype=dtype, device=h_s.device)
                scored = _Sums(difficulty, nll_sum.to(dtype) if nll_sum is not None else zero, zero)
            kd_sum = _pass(h_s, h_t, task, rows, ce_weight, kd_weight, score=False, plan=plan).kd_sum
        elif h_t is None or teacher_head is None:  # SFT: no teacher, no scoring, no selection
            scored = _pass(h_s, None, task, rows, ce_weight, kd_weight, score=True, plan=None)
            nan = torch.full((n_valid,), math.nan, dtype=dtype, device=h_s.device)
            plan = TokenPlan(None, torch.zeros(n_valid, dtype=torch.bool, device=h_s.device), nan.clone(), 1.0, 1.0, 0)
            difficulty, kd_sum = nan, scored.kd_sum
        elif n_selected == n_valid and not idts:
            # Every token selected at a τ known before scoring (plain KD, fixed τ, CTKD at r = 1):
            # one pass scores and distils each chunk, so the heads run once per row.
            placeholder = torch.zeros(n_valid, dtype=dtype, device=h_s.device)
            plan = select_and_temper(placeholder, ratio, False, base_temperature, c, inverse, tau_input)
            scored = _pass(h_s, h_t, task, rows, ce_weight, kd_weight, score=True, plan=plan)
            difficulty, kd_sum = scored.difficulty, scored.kd_sum
        else:
            if cache_rows is None:  # CPU: the bookkeeping's host syncs cost nothing there
                cache_rows = 4 * rows if h_s.device.type == "cpu" else 0
            cache = _RowCache(min(cache_rows, n_selected))
            scored = _pass(h_s, h_t, task, rows, ce_weight, kd_weight, score=True, plan=None, cache=cache)
            difficulty = scored.difficulty
            plan = select_and_temper(difficulty, ratio, idts, base_temperature, c, inverse, tau_input)
            kd_sum = _pass(h_s, h_t, task, rows, ce_weight, kd_weight, score=False, plan=plan, cache=cache).kd_sum
            del cache
    kd = kd_sum / kd_denominator

    ce = scored.nll_sum / n_valid if targets is not None and n_valid else kd.new_tensor(math.nan)
    if n_valid == 0:
        ce = kd.new_zeros(()) if targets is not None else ce
        value = kd.new_zeros(())
    elif kd_ratio == 1.0:
        value = kd
    else:
        value = (1.0 - kd_ratio) * ce + (kd_ratio * kd if kd_ratio > 0 else 0.0)
    if grads is None:
        loss = value
    else:
        inputs = (h_s, weight, bias, tau_input)
        loss = _PrecomputedGradient.apply(value, grads.finished(inputs), *inputs)
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


def token_scores_from_hidden(
    student_hidden: Tensor,
    teacher_hidden: Tensor,
    mask: Tensor,
    student_head: LMHead,
    teacher_head: LMHead,
    indicator: str = "hellinger",
    labels: Tensor | None = None,
    *,
    chunk_size: int | None = None,
    topk: int = DEFAULT_TOPK,
) -> TokenScores:
    """The scoring pass of ``adakd_loss_from_hidden`` alone (no gradient, row chunks): the
    difficulty ``[N]`` of the valid tokens and Σ −log q(label) over them when ``labels`` are
    given — one part of a pooled selection (adakd/method/pooled_selection.py)."""
    from .pooled_selection import TokenScores

    if student_hidden.shape[:-1] != mask.shape or teacher_hidden.shape[:-1] != mask.shape:
        raise ValueError(
            f"mask {tuple(mask.shape)}, student hidden states {tuple(student_hidden.shape)} and teacher "
            f"hidden states {tuple(teacher_hidden.shape)} must agree on [B, T]"
        )
    mask = mask.bool().reshape(-1)
    h_s = student_hidden.detach().reshape(-1, student_hidden.shape[-1])[mask]
    h_t = teacher_hidden.detach().reshape(-1, teacher_hidden.shape[-1])[mask]
    targets = labels.reshape(-1)[mask] if labels is not None else None
    if targets is not None:
        targets = check_labels(targets, torch.Size([h_s.shape[0]]), student_head.vocab_size, "ce")
    dtype = torch.float64 if h_s.dtype == torch.float64 else torch.float32
    weight = student_head.weight.detach().to(student_head.dtype or student_head.weight.dtype)
    bias = student_head.bias.detach().to(weight.dtype) if student_head.bias is not None else None
    s_head = replace(student_head, weight=weight, bias=bias)
    task = _Task(s_head, teacher_head, targets, indicator, topk, "rkl", {}, False, None, dtype)
    rows = chunk_size or default_chunk_rows(student_head.vocab_size)
    with torch.no_grad(), torch.autocast(h_s.device.type, enabled=False):
        sums = _pass(h_s, h_t, task, rows, 0.0, 0.0, score=True, plan=None)
    return TokenScores(sums.difficulty, sums.nll_sum if targets is not None else None)


# ----------------------------------------------------------------------------- the two passes


@dataclass
class _Gradients:
    """float32 (float64 for float64 input) accumulators of ∂loss/∂(h, W, b, τ)."""

    hidden: Tensor
    weight: Tensor
    bias: Tensor | None
    tau: Tensor | None

    @classmethod
    def zeros(cls, h: Tensor, weight: Tensor, bias: Tensor | None, tau: Tensor | None) -> _Gradients:
        dtype = torch.float64 if h.dtype == torch.float64 else torch.float32
        return cls(
            torch.zeros(h.shape, dtype=dtype, device=h.device),
            torch.zeros(weight.shape, dtype=dtype, device=weight.device),
            torch.zeros(bias.shape, dtype=dtype, device=bias.device) if bias is not None else None,
            torch.zeros((), dtype=dtype, device=tau.device) if tau is not None else None,
        )

    def add(self, rows: slice | Tensor, h_rows: Tensor, grad_u: Tensor, weight: Tensor, scale: float) -> None:
        """Chain ∂u ``[R, V]`` through u = scale · (h Wᵀ + b) for the rows ``rows`` of h."""
        g = grad_u * scale if scale != 1.0 else grad_u
        g = g.to(weight.dtype)
        h_rows = h_rows.detach().to(weight.dtype)
        if g.dtype == self.weight.dtype:  # accumulate in place: no [V, H] temporary per chunk
            self.weight.addmm_(g.T, h_rows)
            if isinstance(rows, slice):
                self.hidden[rows].addmm_(g, weight.detach())
            else:
                self.hidden.index_add_(0, rows, g @ weight.detach())
        else:  # bf16 products, float32 accumulators
            self.weight += (g.T @ h_rows).to(self.weight.dtype)
            self.hidden[rows] += (g @ weight.detach()).to(self.hidden.dtype)
        if self.bias is not None:
            self.bias += g.sum(0).to(self.bias.dtype)

    def finished(self, inputs: tuple[Tensor | None, ...]) -> list[Tensor | None]:
        """One gradient per input, in the input's dtype (None where it needs none)."""
        found = (self.hidden, self.weight, self.bias, self.tau)
        return [
            g.to(x.dtype) if g is not None and x is not None and x.requires_grad else None
            for g, x in zip(found, inputs, strict=True)
        ]


@dataclass
class _Task:
    """What every chunk of a pass shares."""

    s_head: LMHead
    t_head: LMHead | None
    targets: Tensor | None  # [N] next-token ids of the valid rows, or None
    indicator: str
    topk: int
    divergence: str
    params: dict[str, float]
    standardize: bool
    grads: _Gradients | None  # None: no gradient wanted
    dtype: torch.dtype  # of the math (float32, or float64 for float64 input)


@dataclass
class _Sums:
    difficulty: Tensor  # [N] (scoring passes with a teacher; else empty)
    nll_sum: Tensor  # Σ −log q(label) over the rows scored (0 without labels)
    kd_sum: Tensor  # Σ τ²·D over the selected rows distilled (0 without a plan)


class _RowCache:
    """u_S and z_T ``[C, V]`` of the C hardest rows the scoring pass has seen so far: a streaming
    top-k by difficulty (ties go either way: a selected row missing here is recomputed)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.filled = 0
        # allocated by the first offer: row ids [C] (−1 = empty), difficulty [C], u_S and z_T [C, V]
        self.rows: Tensor | None = None
        self.difficulty: Tensor | None = None
        self.u: Tensor | None = None
        self.zt: Tensor | None = None

    def offer(self, start: int, d: Tensor, u: Tensor, zt: Tensor) -> None:
        """Rows ``start … start + R − 1`` of the pass with difficulty ``d [R]``, u_S and z_T ``[R, V]``."""
        if self.capacity == 0:
            return
        if self.u is None:
            self.rows = torch.full((self.capacity,), -1, dtype=torch.long, device=d.device)
            self.difficulty = d.new_empty(self.capacity)
            self.u = u.new_empty(self.capacity, u.shape[1])
            self.zt = zt.new_empty(self.capacity, zt.shape[1])
        assert self.rows is not None and self.difficulty is not None and self.zt is not None
        take = min(self.capacity - self.filled, d.numel())  # free slots first
        if take:
            slots = slice(self.filled, self.filled + take)
            self.u[slots], self.zt[slots], self.difficulty[slots] = u[:take], zt[:take], d[:take]
            self.rows[slots] = torch.arange(start, start + take, device=d.device)
            self.filled += take
        if take == d.numel():
            return
        rest = d[take:]
        top = torch.cat((self.difficulty, rest)).topk(self.capacity).indices
        entering = top[top >= self.capacity] - self.capacity  # positions in ``rest``
        if entering.numel() == 0:
            return
        keep = torch.zeros(self.capacity, dtype=torch.bool, device=d.device)
        keep[top[top < self.capacity]] = True
        freed = (~keep).nonzero().squeeze(1)  # as many as enter
        self.u[freed], self.zt[freed] = u[take:][entering], zt[take:][entering]
        self.difficulty[freed] = rest[entering]
        self.rows[freed] = start + take + entering

    def take(self, slots: Tensor, index: slice | Tensor, h_s: Tensor, h_t: Tensor | None, task: _Task):
        """u_S and z_T ``[R, V]`` of one chunk of planned rows (``index`` into the pass's rows,
        ``slots`` their cache slots): cached rows copied, the others computed by the heads."""
        assert self.u is not None and self.zt is not None and h_t is not None and task.t_head is not None
        hit = slots >= 0
        if bool(hit.all()):
            return self.u[slots], self.zt[slots]
        rows = index if isinstance(index, Tensor) else torch.arange(index.start, index.stop, device=slots.device)
        u = self.u.new_empty(slots.numel(), self.u.shape[1])
        zt = self.zt.new_empty(slots.numel(), self.zt.shape[1])
        found, missing = hit.nonzero().squeeze(1), (~hit).nonzero().squeeze(1)
        u[found], zt[found] = self.u[slots[found]], self.zt[slots[found]]
        u[missing] = task.s_head.pre_activation(h_s[rows[missing]])
        zt[missing] = task.t_head.activate(task.t_head.pre_activation(h_t[rows[missing]]))
        return u, zt

    def slots(self, rows: Tensor, n: int) -> Tensor:
        """The cache slot of each of ``rows`` (ids among the pass's ``n`` rows), −1 where absent."""
        slot_of_row = torch.full((n,), -1, dtype=torch.long, device=rows.device)
        if self.filled:
            assert self.rows is not None
            slot_of_row[self.rows[: self.filled]] = torch.arange(self.filled, device=rows.device)
        return slot_of_row[rows]


def _pass(
    h_s: Tensor,
    h_t: Tensor | None,
    task: _Task,
    rows: int,
    ce_weight: float,
    kd_weight: float,
    *,
    score: bool,
    plan: TokenPlan | None,
    cache: _RowCache | None = None,
) -> _Sums:
    """One pass over row chunks of the valid rows.

    score: every row's difficulty and −log q(label), and the gradient of ``ce_weight ·
    Σ −log q(label)`` when ``ce_weight > 0``. plan: Σ τ²·D over the plan's selected rows (every
    row when ``plan.idx`` is None) and the gradient of ``kd_weight · Σ τ²·D``. A pass with both
    covers every row: the heads' products run once per row for scoring and distilling.
    cache: filled by a scoring pass; a distillation pass takes the cached rows' u_S and z_T from
    it and runs the heads on the others, chunk by chunk as without it.
    """
    n = h_s.shape[0]
    device = h_s.device
    sums = _Sums(
        torch.empty(n if score and h_t is not None else 0, dtype=task.dtype, device=device),
        torch.zeros((), dtype=task.dtype, device=device),
        torch.zeros((), dtype=task.dtype, device=device),
    )
    grads = task.grads
    selected = plan.idx if plan is not None else None
    if score and selected is not None:
        raise ValueError("a scoring pass covers every valid row")
    count = selected.numel() if selected is not None else n
    distil = plan is not None and plan.n_selected > 0 and h_t is not None and task.t_head is not None
    per_token_tau = plan is not None and isinstance(plan.tau_arg, Tensor) and plan.tau_arg.dim() == 1
    learned = plan is not None and isinstance(plan.tau_arg, Tensor) and plan.tau_arg.dim() == 0
    weight = task.s_head.weight.detach()
    # the cache slot of each planned row (−1: not cached), when a scoring pass left a cache
    slot = None
    if distil and cache is not None and cache.filled:
        slot = cache.slots(selected if selected is not None else torch.arange(count, device=device), n)
    for i in range(0, count, rows):
        j = min(i + rows, count)
        index: slice | Tensor = selected[i:j] if selected is not None else slice(i, j)
        h_rows = h_s[index]
        labels = task.targets[index] if task.targets is not None else None
        if slot is not None and cache is not None:  # the same chunks as without the cache: the same sums
            u, zt = cache.take(slot[i:j], index, h_s, h_t, task)
        else:
            u = task.s_head.pre_activation(h_rows)
            zt = None
            if h_t is not None and task.t_head is not None:
                zt = task.t_head.activate(task.t_head.pre_activation(h_t[index]))
        ce_grad = score and grads is not None and ce_weight > 0 and labels is not None
        kd_grad = distil and grads is not None and kd_weight > 0
        objective = []
        tau_leaf: Tensor | float = 1.0
        with torch.set_grad_enabled(ce_grad or kd_grad):
            u_leaf = u.requires_grad_() if ce_grad or kd_grad else u
            z = task.s_head.activate(u_leaf)
            if ce_grad and labels is not None:
                nll = F.cross_entropy(z.to(task.dtype), labels, reduction="none")
                sums.nll_sum += nll.detach().sum()
                objective.append(nll.sum() * ce_weight)
            if distil and plan is not None and zt is not None:
                tau: Tensor | float = plan.tau_arg[i:j] if per_token_tau else plan.tau_arg  # type: ignore[index]
                tau_leaf = tau.detach().requires_grad_() if learned and kd_grad else tau  # type: ignore[union-attr]
                if task.standardize or learned:
                    per_token = tempered_divergence(
                        task.divergence, z, zt, tau_leaf, standardize=task.standardize, **task.params
                    )
                else:
                    per_token = divergence_fn(task.divergence, z, zt, tau_leaf, **task.params)
                tau_sq = tau_leaf.square() if isinstance(tau_leaf, Tensor) else float(tau_leaf) ** 2
                term = (tau_sq * per_token).sum()
                sums.kd_sum += term.detach()
                if kd_grad:
                    objective.append(term * kd_weight)
        if score:
            if zt is not None:
                want_nll = labels is not None and not ce_grad
                d, nll_rows = score_tokens(z.detach(), zt, task.indicator, labels, with_nll=want_nll, topk=task.topk)
                sums.difficulty[index] = d
                if cache is not None and isinstance(index, slice):
                    cache.offer(index.start, d, u.detach(), zt)
                if nll_rows is not None:
                    sums.nll_sum += nll_rows.sum()
            elif labels is not None and not ce_grad:  # SFT without gradient
                sums.nll_sum += F.cross_entropy(z.detach().to(task.dtype), labels, reduction="sum")
        if objective and grads is not None:
            leaves = [u_leaf] + ([tau_leaf] if learned and kd_grad and isinstance(tau_leaf, Tensor) else [])
            found = torch.autograd.grad(torch.stack(objective).sum(), leaves)
            grads.add(index, h_rows, found[0], weight, task.s_head.scale)
            if len(found) > 1 and grads.tau is not None:
                grads.tau += found[1].to(grads.tau.dtype)
    return sums


class _PrecomputedGradient(torch.autograd.Function):
    """The loss value, with gradients w.r.t. (h, W, b, τ) already computed: backward scales them
    by the incoming gradient (1 for ``loss.backward()``, 1/grad_accum for an accumulated loss)."""

    @staticmethod
    def forward(ctx, value: Tensor, gradients: list[Tensor | None], *inputs: Tensor | None) -> Tensor:
        ctx.gradients = gradients
        return value.detach().clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        scaled = [g * grad.to(g.dtype) if g is not None else None for g in ctx.gradients]
        return (None, None, *scaled)
