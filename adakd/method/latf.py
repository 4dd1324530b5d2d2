"""LATF — Loss-driven Adaptive Token Focusing (docs/method.md §2): token selection and the ratio r.

``select_tokens`` keeps the hardest ``k = max(1, floor(r · N))`` tokens of the whole batch.
``LATFController`` adapts r from the loss once per optimiser step; ``FixedRatio``,
``LinearRatio`` and ``CosineRatio`` are the ablation schedules behind the same interface:

    schedule.ratio          the r to use for the current step
    schedule.update(loss)   advance one optimiser step; returns the r for the next step
    schedule.last_change    (old, new) if that update changed r, else None
    schedule.state_dict() / load_state_dict(d)   JSON-serialisable state for checkpoints

``make_ratio_schedule(kind, total_steps, ...)`` builds one from the run config's fields.
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor

from adakd.names import LATF_KINDS

log = logging.getLogger(__name__)

_COUNT_TOLERANCE = 1e-9  # floor(r·N) of the *intended* product: 0.29·100 selects 29, not 28


def selection_count(n_valid: int, ratio: float) -> int:
    """k = max(1, floor(r · N)) for N ≥ 1 (0 for N = 0); r·N is floored with a 1e-9 tolerance."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1] (got {ratio})")
    if n_valid <= 0:
        return 0
    return min(n_valid, max(1, math.floor(ratio * n_valid + _COUNT_TOLERANCE)))


def select_tokens(difficulty: Tensor, ratio: float) -> Tensor:
    """Boolean mask ``[N]`` of the ``max(1, floor(ratio · N))`` most difficult tokens.

    Pooled: ``difficulty`` holds every valid token of the batch (not per sequence).
    Ties are broken deterministically by position: a stable descending sort keeps the
    earlier token first, so among equal scores the lower indices are selected, on every device.
    """
    if difficulty.dim() != 1:
        raise ValueError(f"difficulty must be a 1-D tensor [N] (got shape {tuple(difficulty.shape)})")
    selected = torch.zeros(difficulty.shape, dtype=torch.bool, device=difficulty.device)
    selected[top_indices(difficulty, selection_count(difficulty.numel(), ratio))] = True
    return selected


def top_indices(difficulty: Tensor, k: int) -> Tensor:
    """Indices ``[k]`` (ascending) of the k most difficult tokens, ties to the earlier token.

    No host synchronisation: the loss uses these directly instead of ``mask.nonzero()``.
    """
    if k >= difficulty.numel():
        return torch.arange(difficulty.numel(), device=difficulty.device)
    order = torch.sort(difficulty.detach(), descending=True, stable=True).indices
    return order[:k].sort().values


def _check_ratio(name: str, value: float) -> float:
    value = float(value)
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (got {value})")
    return value


def _check_loss(loss: float) -> float:
    loss = float(loss)
    if not math.isfinite(loss):
        raise ValueError(f"ratio schedule update got a non-finite loss ({loss}); skip the update for that step")
    return loss


class LATFController:
    """The paper's ratio controller (docs/method.md §2), one ``update`` per optimiser step.

        state: r = 1.0, ema = None, ref = None, n = 0
        update(loss):
            n += 1
            ema = loss if ema is None else β·ema + (1−β)·loss
            if ref is None:
                if n > warmup_steps: ref = ema
            elif ema < ref·(1−ε):  r = max(r_min, r·(1−δ)); ref = ema
            elif ema > ref·(1+ε):  r = min(1.0,  r·(1+δ)); ref = ema
            return r

    ``initial_ratio`` (default 1.0, the paper's) is r before the first update.
    In data-parallel runs pass the loss averaged over ranks so every rank keeps the same r.

    Note: the public release keeps this state in the trainer object and loses it on resume;
    here ``state_dict()`` holds (r, ema, ref, n) and is saved with every checkpoint.
    """

    kind = "adaptive"

    def __init__(
        self,
        beta: float = 0.99,
        eps: float = 0.05,
        delta: float = 0.05,
        warmup_steps: int = 0,
        min_ratio: float = 0.1,
        initial_ratio: float = 1.0,
    ):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"LATF beta must be in [0, 1) (got {beta})")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"LATF eps must be in [0, 1) (got {eps})")
        if not 0.0 <= delta < 1.0:
            raise ValueError(f"LATF delta must be in [0, 1) (got {delta})")
        if isinstance(warmup_steps, bool) or int(warmup_steps) != warmup_steps or warmup_steps < 0:
            raise ValueError(f"LATF warmup_steps must be an integer >= 0 (got {warmup_steps!r})")
        self.beta, self.eps, self.delta = float(beta), float(eps), float(delta)
        self.warmup_steps = int(warmup_steps)
        self.min_ratio = _check_ratio("LATF min_ratio", min_ratio)
        self.ratio = _check_ratio("LATF initial_ratio", initial_ratio)
        if self.ratio < self.min_ratio:
            raise ValueError(f"LATF initial_ratio {self.ratio} is below min_ratio {self.min_ratio}")
        self.ema: float | None = None
        self.ref: float | None = None
        self.n = 0
        self.last_change: tuple[float, float] | None = None

    def update(self, loss: float) -> float:
        """Feed this step's scalar loss; return r for the next step (see the class doc)."""
        loss = _check_loss(loss)
        old = self.ratio
        self.n += 1
        self.ema = loss if self.ema is None else self.beta * self.ema + (1.0 - self.beta) * loss
        if self.ref is None:
            if self.n > self.warmup_steps:
                self.ref = self.ema
        elif self.ema < self.ref * (1.0 - self.eps):
            self.ratio = max(self.min_ratio, self.ratio * (1.0 - self.delta))
            self.ref = self.ema
        elif self.ema > self.ref * (1.0 + self.eps):
            self.ratio = min(1.0, self.ratio * (1.0 + self.delta))
            self.ref = self.ema
        self.last_change = (old, self.ratio) if self.ratio != old else None
        return self.ratio

    def state_dict(self) -> dict:
        return {
            "kind": self.kind,
            "ratio": self.ratio,
            "ema": self.ema,
            "ref": self.ref,
            "n": self.n,
            "beta": self.beta,
            "eps": self.eps,
            "delta": self.delta,
            "warmup_steps": self.warmup_steps,
            "min_ratio": self.min_ratio,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore (r, ema, ref, n). Hyper-parameters stay those of this object (a warning
        is logged when the saved ones differ, e.g. a resumed run with an edited config)."""
        _check_kind(self.kind, state)
        changed = [
            k
            for k in ("beta", "eps", "delta", "warmup_steps", "min_ratio")
            if k in state and state[k] != getattr(self, k)
        ]
        if changed:
            log.warning("LATF state was saved with different %s; keeping the current values", ", ".join(changed))
        self.ratio = float(state["ratio"])
        self.ema = None if state["ema"] is None else float(state["ema"])
        self.ref = None if state["ref"] is None else float(state["ref"])
        self.n = int(state["n"])
        self.last_change = None


class FixedRatio:
    """r constant for the whole run (``kind="off"`` is FixedRatio(1.0): every token)."""

    kind = "fixed"
    ema = None
    ref = None

    def __init__(self, ratio: float = 1.0):
        self.ratio = _check_ratio("fixed ratio", ratio)
        self.n = 0
        self.last_change: tuple[float, float] | None = None

    def update(self, loss: float) -> float:
        _check_loss(loss)
        self.n += 1
        return self.ratio

    def state_dict(self) -> dict:
        return {"kind": self.kind, "ratio": self.ratio, "n": self.n}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(self.kind, state)
        self.n = int(state["n"])


class LinearRatio:
    """r moves from r₀ to r₁ over the run: step n (0-based) uses
    r₀ + (r₁ − r₀)·f with f = min(1, n / (total_steps − 1)), so the first step uses r₀ and
    the last r₁. r changes at every update, so ``last_change`` is set at every step."""

    kind = "linear"
    ema = None
    ref = None

    def __init__(self, start: float, end: float, total_steps: int):
        self.start = _check_ratio(f"{self.kind} ratio start", start)
        self.end = _check_ratio(f"{self.kind} ratio end", end)
        if isinstance(total_steps, bool) or int(total_steps) != total_steps or total_steps < 1:
            raise ValueError(f"total_steps must be an integer >= 1 (got {total_steps!r})")
        self.total_steps = int(total_steps)
        self.n = 0
        self.last_change: tuple[float, float] | None = None

    def _shape(self, f: float) -> float:
        return f

    @property
    def ratio(self) -> float:
        f = min(1.0, self.n / max(1, self.total_steps - 1))
        return self.start + (self.end - self.start) * self._shape(f)

    def update(self, loss: float) -> float:
        _check_loss(loss)
        old = self.ratio
        self.n += 1
        new = self.ratio
        self.last_change = (old, new) if new != old else None
        return new

    def state_dict(self) -> dict:
        return {"kind": self.kind, "n": self.n, "start": self.start, "end": self.end, "total_steps": self.total_steps}

    def load_state_dict(self, state: dict) -> None:
        _check_kind(self.kind, state)
        self.n = int(state["n"])
        self.last_change = None


class CosineRatio(LinearRatio):
    """r from r₀ to r₁ along a half cosine: r₁ + (r₀ − r₁)·½(1 + cos(π f)), f as in LinearRatio."""

    kind = "cosine"

    def _shape(self, f: float) -> float:
        return 0.5 * (1.0 - math.cos(math.pi * f))  # 0 → 1, so start + (end − start)·this


def _check_kind(kind: str, state: dict) -> None:
    saved = state.get("kind")
    if saved != kind:
        raise ValueError(
            f"cannot load a {saved!r} ratio-schedule state into a {kind!r} schedule; "
            "resume with the run's original latf setting"
        )


RatioSchedule = LATFController | FixedRatio | LinearRatio  # what make_ratio_schedule returns (CosineRatio included)


def make_ratio_schedule(
    kind: str,
    total_steps: int,
    start: float = 1.0,
    end: float | None = None,
    *,
    beta: float = 0.99,
    eps: float = 0.05,
    delta: float = 0.05,
    warmup: float = 0.05,
    min_ratio: float = 0.1,
) -> RatioSchedule:
    """Build the ratio schedule of a run.

    kind: ``adaptive`` LATFController starting at ``start`` (1.0 in the paper), with
    ``warmup_steps = floor(warmup · total_steps)``; ``off`` FixedRatio(1.0); ``fixed``
    FixedRatio(start); ``linear`` / ``cosine`` from ``start`` to ``end`` over ``total_steps``.
    """
    if kind not in LATF_KINDS:
        raise ValueError(f"unknown ratio schedule {kind!r}; valid: {', '.join(LATF_KINDS)}")
    if isinstance(total_steps, bool) or int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1 (got {total_steps!r})")
    if kind == "adaptive":
        if not 0.0 <= warmup <= 1.0:
            raise ValueError(f"LATF warmup must be a fraction of the steps in [0, 1] (got {warmup})")
        return LATFController(
            beta=beta,
            eps=eps,
            delta=delta,
            min_ratio=min_ratio,
            warmup_steps=math.floor(warmup * total_steps),
            initial_ratio=start,
        )
    if kind == "off":
        return FixedRatio(1.0)
    if kind == "fixed":
        return FixedRatio(start)
    if end is None:
        raise ValueError(f"a {kind} ratio schedule needs an end ratio (ratio_end)")
    return (LinearRatio if kind == "linear" else CosineRatio)(start, end, total_steps)
