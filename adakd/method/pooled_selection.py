"""LATF's selection pooled over a whole optimisation step (``latf_pool = "step"``; docs/method.md §2.2).

By default (``latf_pool = "micro-batch"``, as the public release) every micro-batch selects its
own top k = max(1, floor(r·n)) of its n valid tokens and IDTS takes the median of its own
selected tokens. With gradient accumulation over g micro-batches and W data-parallel ranks, the
step pool instead ranks all N = Σ n_j valid tokens of the step's g·W micro-batches together:

    s        = concat(s_1, …, s_{gW})             the pool's scores in the data order: micro-batch,
                                                 then rank, then position (the tie order)
    K        = max(1, floor(r·N))                 one top-K over the pool, one IDTS median
    L_KD     = (1/K) Σ_{i ∈ top-K} τ_i² · D_i     the step's KD term (every micro-batch's share)

so the step equals one batch of all g·W micro-batches: gradient accumulation and the number of
ranks no longer change which tokens are distilled. Micro-batch j contributes
Σ_{i ∈ top-K, i in j} τ_i² · D_i / (K / (g·W)) to its loss: the trainer divides each micro-batch's
loss by g and DDP averages over W ranks, which leaves exactly L_KD. A micro-batch may hold none
of the K (its loss is then 0, with the graph kept).

The cost: the pool must be scored before any gradient, so each micro-batch's student runs one
extra forward without gradient (the teacher's outputs are kept from the scoring pass).

    parts = [token_scores_from_hidden(h_S_j, h_T_j, mask_j, ...) for j in micro-batches]
    shares = pool_selection(parts, ratio, idts=True, base_temperature=1.0, c=0.5, inverse=False)
    out_j = adakd_loss_from_hidden(h_S_j, h_T_j, mask_j, ..., pooled=shares[j])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .loss import TokenPlan, select_and_temper


@dataclass(frozen=True)
class TokenScores:
    """One micro-batch's scoring pass: difficulty ``[n]`` of its valid tokens (row-major order of
    its mask) and Σ −log q(label) over them (None without labels)."""

    difficulty: Tensor
    nll_sum: Tensor | None


@dataclass(frozen=True)
class PooledShare:
    """One micro-batch's part of a selection made over a larger pool.

    plan: the part's selected rows and τ (``TokenPlan`` over its n valid rows; CTKD's learned τ
    is put in by ``plan_with``). scores: its scoring pass (the loss reports this difficulty and,
    at kd_ratio = 1, takes the cross-entropy it logs from ``nll_sum`` instead of scoring again).
    kd_denominator: K / n_parts; the part's KD term is Σ τ²·D over its selected rows divided by it.
    """

    plan: TokenPlan
    scores: TokenScores
    kd_denominator: float

    @property
    def n_valid(self) -> int:
        return self.scores.difficulty.numel()

    def plan_with(self, learned_temperature: Tensor | None) -> TokenPlan:
        """The plan, with CTKD's learned τ (0-dim, with gradient) for every selected token when given."""
        if learned_temperature is None:
            return self.plan
        tau = learned_temperature.to(self.plan.temperature.dtype)
        temperature = self.plan.temperature.masked_fill(self.plan.selected, float(tau.detach()))
        return replace(self.plan, temperature=temperature, tau_arg=tau, tau_sq=tau.square())

    def check(self, n_valid: int, idts: bool, learned_temperature: Tensor | None) -> None:
        """ValueError when the share does not fit the batch it is used with."""
        if n_valid != self.n_valid:
            raise ValueError(f"the pooled share covers {self.n_valid} valid tokens; this batch has {n_valid}")
        if learned_temperature is not None and idts:
            raise ValueError("learned_temperature (CTKD) replaces IDTS: pass idts=False")


def pool_selection(
    parts: list[TokenScores],
    ratio: float,
    idts: bool,
    base_temperature: float,
    c: float,
    inverse: bool,
) -> list[PooledShare]:
    """LATF's top-K and the IDTS temperatures over the concatenated ``parts`` (in their order),
    split back into one ``PooledShare`` per part. Tokens are ranked exactly as
    ``select_and_temper`` ranks one batch of all of them (ties to the earlier part and position).
    CTKD: pass idts=False and give the learned τ to the loss (``PooledShare.plan_with``)."""
    if not parts:
        raise ValueError("pool_selection needs at least one part")
    difficulty = torch.cat([p.difficulty.reshape(-1) for p in parts])
    plan = select_and_temper(difficulty, ratio, idts, base_temperature, c, inverse, None)
    denominator = max(plan.n_selected, 1) / len(parts)
    shares, offset = [], 0
    for part in parts:
        n = part.difficulty.numel()
        selected = plan.selected[offset : offset + n]
        temperature = plan.temperature[offset : offset + n]
        offset += n
        k = int(selected.sum())
        idx = None if k == n else selected.nonzero().squeeze(1)  # ascending, like select_and_temper's
        tau_arg: Tensor | float
        tau_sq: Tensor | float
        if idts:
            tau_arg = temperature if idx is None else temperature[idx]
            tau_sq = tau_arg.square()
        else:
            tau_arg, tau_sq = plan.tau_arg, plan.tau_sq
        shares.append(PooledShare(TokenPlan(idx, selected, temperature, tau_arg, tau_sq, k), part, denominator))
    return shares


def gather_scores(parts: list[TokenScores], rank: int, world: int) -> list[TokenScores]:
    """Every rank's parts in the data order: micro-batch by micro-batch, each one's ranks in turn
    (the trainer deals examples out so that this is the single-process order of the examples).
    This rank's own part j sits at ``j * world + rank``, with its ``nll_sum``; the others carry
    their difficulty only. ``world == 1``: ``parts`` unchanged. Every rank passes the same number
    of parts (its grad_accum micro-batches); their lengths may differ."""
    if world == 1:
        return parts
    import torch.distributed as dist

    device = parts[0].difficulty.device
    sizes = torch.tensor([p.difficulty.numel() for p in parts], dtype=torch.int64, device=device)
    all_sizes = [torch.empty_like(sizes) for _ in range(world)]
    dist.all_gather(all_sizes, sizes)
    longest = int(max(int(s.sum()) for s in all_sizes))
    flat = torch.cat([p.difficulty.reshape(-1) for p in parts])
    padded = torch.zeros(longest, dtype=flat.dtype, device=device)
    padded[: flat.numel()] = flat
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    by_rank: list[list[TokenScores]] = []
    for r in range(world):
        if r == rank:
            by_rank.append(list(parts))
            continue
        offsets = [0, *torch.cumsum(all_sizes[r], 0).tolist()]
        by_rank.append([TokenScores(gathered[r][a:b], None) for a, b in zip(offsets, offsets[1:], strict=False)])
    return [by_rank[r][j] for j in range(len(parts)) for r in range(world)]
