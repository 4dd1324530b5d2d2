"""DistiLLM's validation loss, which its adaptive student-data probability φ follows: a callback
of the project's loop (adakd.training.trainer) for runs with ``regime = "distillm"``.

As DistiLLM's release (``finetune.py`` ``evaluate``: the LM loss on the dev set), the loss is the
student's cross-entropy on held-out labels, token-weighted over the fixed validation set (up to
``runsetup.VALIDATION_EXAMPLES`` examples in batches of ``VALIDATION_BATCH``):

    L_val = − Σ_i log q_θ(y_i | y_<i, x) / N      (i over the N response tokens)

It is measured at step 0 (the untrained student is DistiLLM's reference) and every
``validation_interval`` steps, on every rank (DDP all-reduces it, so φ agrees bit for bit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from adakd.data.tokenize import next_token_targets
from adakd.training.callbacks import RunCallback, RunView
from adakd.training.device import autocast

if TYPE_CHECKING:
    from adakd.config import RunConfig
    from adakd.training.regimes import Regime


def validation_interval(config: RunConfig) -> int:
    """The eval interval, else the probe interval, else ten times per run."""
    return config.eval_interval or config.probe_interval or max(1, config.max_steps // 10)


@dataclass
class ValidationLoss(RunCallback):
    """Feeds ``regime.on_validation_loss`` and records a ``validation`` event (rank 0, once per step:
    `validated` holds the steps already in events.jsonl, which a resumed run passes in)."""

    regime: Regime
    validated: set[int] = field(default_factory=set)

    def on_begin(self, view: RunView) -> None:
        if view.step == 0:
            self.measure(view)

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        if view.step % validation_interval(view.config) == 0:
            self.measure(view)

    def measure(self, view: RunView) -> None:
        """``valid_logits`` runs the student in eval mode under no_grad and restores its modes and
        the RNG states, so the training stream is untouched. The teacher is not needed."""
        import torch.nn.functional as F

        from adakd.training.probes import valid_logits

        total, count = torch.zeros((), dtype=torch.float64), 0
        for cpu_batch in view.data.validation_batches:
            batch = {k: v.to(view.device) for k, v in cpu_batch.items()}
            targets, mask = next_token_targets(batch["labels"])
            with autocast(view.device, view.dtype):
                logits = valid_logits(view.student, batch)
            total += F.cross_entropy(logits.float(), targets[mask], reduction="sum").double().cpu()
            count += int(mask.sum())
        loss = total / max(count, 1)
        if view.world > 1:
            dist.all_reduce(loss)
            loss /= view.world
        self.regime.on_validation_loss(loss.item())
        if view.main and view.step not in self.validated:
            self.validated.add(view.step)
            view.run.event(
                view.step,
                "validation",
                f"validation CE {loss.item():.4f} ({count} tokens)",
                loss=loss.item(),
                tokens=count,
                student_data_prob=getattr(self.regime, "student_data_prob", None),
            )
