"""DistiLLM's state: the replay buffer of student samples and the adaptive probability φ of
using student data (Ko et al., ICML 2024; release ``distillm/buffer.py`` and ``finetune.py``).
Both serialise to JSON (lists of ints, floats) for trainer_state.json. Used by
:class:`adakd.training.regimes.DistiLLMRegime`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- replay buffer
class ReplayBuffer:
    """FIFO replay buffer of (prompt ids, response ids) student samples.

    As DistiLLM's release (``distillm/buffer.py``: ``deque(maxlen=capacity)``, uniform
    ``random.sample`` of a batch without replacement): once full, each new sample evicts the
    oldest, so the buffer holds the ``capacity`` most recent samples of a drifting student.
    ``state_dict`` is plain JSON (lists of ints) for trainer_state.json.
    """

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 1:
            raise ValueError(f"buffer capacity must be >= 1 (got {capacity})")
        self.capacity = int(capacity)
        self._items: deque[tuple[list[int], list[int]]] = deque(maxlen=self.capacity)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.capacity

    def add(self, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> None:
        """Append one sample (evicting the oldest when full)."""
        self._items.append(([int(t) for t in prompt_ids], [int(t) for t in response_ids]))

    def extend(self, prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]]) -> None:
        for p, r in zip(prompts, responses, strict=True):
            self.add(p, r)

    def sample(self, n: int, generator: torch.Generator) -> list[tuple[list[int], list[int]]]:
        """``n`` distinct samples, uniformly without replacement, drawn with ``generator``."""
        if not 0 < n <= len(self._items):
            raise ValueError(f"cannot sample {n} items from a replay buffer holding {len(self._items)}")
        picks = torch.randperm(len(self._items), generator=generator)[:n].tolist()
        return [(list(self._items[i][0]), list(self._items[i][1])) for i in picks]

    def state_dict(self) -> dict[str, Any]:
        return {"capacity": self.capacity, "items": [[list(p), list(r)] for p, r in self._items]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        items = state["items"]
        if int(state["capacity"]) != self.capacity:
            log.warning(
                "replay buffer capacity changed from %s to %s on load; keeping the newest items",
                state["capacity"],
                self.capacity,
            )
        self._items = deque(([int(t) for t in p], [int(t) for t in r]) for p, r in items)
        while len(self._items) > self.capacity:
            self._items.popleft()
        self._items = deque(self._items, maxlen=self.capacity)


# --------------------------------------------------------------------------- DistiLLM's φ
class AdaptiveStudentDataProb:
    """DistiLLM's adaptive probability φ of training on student-generated outputs.

    Rule (DistiLLM §3.2 "adaptive SGO scheduler"; release ``finetune.py``: ``init_threshold``
    0.0, ``loss_eps`` 0.1, step 0.1):

        state: φ = initial (0), L_ref = None
        update(L_val):                       # once per validation, the first one before training
            if L_ref is None:        L_ref = L_val                       # reference only
            elif L_val >= L_ref + ε: φ = min(φ_max, φ + δ); L_ref = L_val
            return φ

    i.e. φ rises by δ (``prob_step``) whenever the validation loss has stopped improving to the
    point of coming back at least ε (``threshold``) above the reference — the loss at the start
    or at the last rise. The reference does not follow improvements (as in the release), so a
    steadily improving run keeps φ where it is; only the student starting to drift away from
    the data (validation loss rising) moves it to more student data.

    Decay over training (release default ``replay_ratio = "decreasing"``): the probability of
    generating *fresh* samples at 1-based step t of T is ``φ · max(0, 1 − t/T)``
    (:meth:`generation_prob`); the rest of φ is served from the replay buffer (see
    :class:`DistiLLMRegime`). Non-finite losses are ignored with a warning.
    """

    def __init__(
        self, prob_step: float = 0.1, threshold: float = 0.1, initial: float = 0.0, max_prob: float = 1.0
    ) -> None:
        if not 0 <= prob_step <= 1 or threshold < 0 or not 0 <= initial <= max_prob <= 1:
            raise ValueError(
                f"need 0 <= prob_step <= 1, threshold >= 0, 0 <= initial <= max_prob <= 1 "
                f"(got {prob_step}, {threshold}, {initial}, {max_prob})"
            )
        self.prob_step, self.threshold, self.max_prob = float(prob_step), float(threshold), float(max_prob)
        self.prob = float(initial)
        self.reference: float | None = None
        self.n_updates = 0

    def update(self, val_loss: float) -> float:
        """Feed one validation loss; returns φ (changed only on the stated condition)."""
        val_loss = float(val_loss)
        if not math.isfinite(val_loss):
            log.warning("non-finite validation loss %s ignored by the DistiLLM scheduler", val_loss)
            return self.prob
        self.n_updates += 1
        if self.reference is None:
            self.reference = val_loss
        elif val_loss >= self.reference + self.threshold:
            self.prob = min(self.max_prob, self.prob + self.prob_step)
            self.reference = val_loss
        return self.prob

    def generation_prob(self, step: int, total_steps: int) -> float:
        """φ · max(0, 1 − step/total_steps): the probability of fresh samples at ``step`` (1-based)."""
        return self.prob * max(0.0, 1.0 - step / max(1, total_steps))

    def state_dict(self) -> dict[str, Any]:
        return {
            "prob": self.prob,
            "reference": self.reference,
            "n_updates": self.n_updates,
            "prob_step": self.prob_step,
            "threshold": self.threshold,
            "max_prob": self.max_prob,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prob = float(state["prob"])
        self.reference = None if state["reference"] is None else float(state["reference"])
        self.n_updates = int(state.get("n_updates", 0))
