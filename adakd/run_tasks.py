"""What a training run does between optimiser steps: checkpoints, probes, evaluation, and the
validation loss that DistiLLM's adaptive student-data probability follows.

``RunTasks`` is a mixin of ``adakd.trainer._Run``: its methods read the run's state (config,
run directory, models, data, schedule, regime, step, ``main`` = rank 0) and write the run
directory's checkpoints/, tokens/gradients.parquet, eval.jsonl and events.jsonl. Only rank 0
writes; the validation loss is computed on every rank (DDP all-reduces it).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torch.distributed as dist

from adakd import checkpoint as ckpt
from adakd.device import autocast
from adakd.rundir import EVAL, GRADIENTS, TOKENS
from adakd.timestamps import utc_now
from adakd.tokenize import next_token_targets

if TYPE_CHECKING:  # for the annotations only: importing transformers at module load costs seconds
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adakd.config import RunConfig
    from adakd.device import Distributed
    from adakd.latf import RatioSchedule
    from adakd.regimes import Regime
    from adakd.rundir import RunDir
    from adakd.runsetup import TrainData
    from adakd.temperature import CTKDTemperature

SHARED_MODELS = ("teacher", "student_init")  # evaluation records every run of a study shares (adakd/eval_cache.py)


class RunTasks:
    """Checkpoint, probe, evaluate and validate the run of ``adakd.trainer._Run``.

    The run's state these methods read and write; ``_Run.__init__`` and ``_Run._setup`` set it.
    """

    config: RunConfig
    run: RunDir
    dist: Distributed
    main: bool  # rank 0: the only process that writes the run directory
    step: int  # optimiser steps done
    position: int  # examples consumed (adakd.runsetup.DataOrder)
    last_checkpoint: int | None
    tokens_frame: pd.DataFrame | None  # tokens.parquet so far
    gradients_frame: pd.DataFrame | None  # gradients.parquet so far
    done_evals: set[tuple[int, str]]  # (step, model name) already in eval.jsonl
    validated: set[int]  # steps whose `validation` event is already in events.jsonl
    teacher_probe_logits: dict[str, torch.Tensor] | None  # "probe" / "gradient" -> [N, V]
    _status_written: float  # time.monotonic() of the last status.json rewrite
    device: torch.device
    dtype: torch.dtype  # the autocast dtype
    teacher: PreTrainedModel
    student: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    data: TrainData
    schedule: RatioSchedule
    regime: Regime
    ctkd: CTKDTemperature | None  # CTKD's learnable temperature, None without CTKD
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler

    def _write_running_status(self) -> None:
        self.run.set_status(
            "running", step=self.step, total_steps=self.config.max_steps, last_checkpoint=self.last_checkpoint
        )
        self._status_written = time.monotonic()

    def _validation_interval(self) -> int:
        """DistiLLM adapts its student-data probability from a validation loss: measured at
        the eval interval, else the probe interval, else ten times per run."""
        c = self.config
        return c.eval_interval or c.probe_interval or max(1, c.max_steps // 10)

    def _feed_validation_loss(self) -> None:
        """Feed DistiLLM's adaptive probability the student's validation loss.

        As DistiLLM's release (``finetune.py`` ``evaluate``: the LM loss on the dev set), the loss
        is the student's cross-entropy on held-out labels, here token-weighted over the fixed
        validation set (up to ``runsetup.VALIDATION_EXAMPLES`` examples in batches of
        ``VALIDATION_BATCH``):

            L_val = − Σ_i log q_θ(y_i | y_<i, x) / N      (i over the N response tokens)

        The teacher is not needed. ``valid_logits`` runs the student in eval mode under no_grad
        and restores its modes and the RNG states, so the training stream is untouched. Under
        DDP every rank scores the same set; the all-reduced mean makes φ agree bit for bit.
        """
        import torch.nn.functional as F

        from adakd.probes import valid_logits

        total, count = torch.zeros((), dtype=torch.float64), 0
        for cpu_batch in self.data.validation_batches:
            batch = {k: v.to(self.device) for k, v in cpu_batch.items()}
            targets, mask = next_token_targets(batch["labels"])
            with autocast(self.device, self.dtype):
                logits = valid_logits(self.student, batch)
            total += F.cross_entropy(logits.float(), targets[mask], reduction="sum").double().cpu()
            count += int(mask.sum())
        loss = total / max(count, 1)
        if self.dist.world > 1:
            dist.all_reduce(loss)
            loss /= self.dist.world
        self.regime.on_validation_loss(loss.item())
        if self.main and self.step not in self.validated:
            self.validated.add(self.step)
            self.run.event(
                self.step,
                "validation",
                f"validation CE {loss.item():.4f} ({count} tokens)",
                loss=loss.item(),
                tokens=count,
                student_data_prob=getattr(self.regime, "student_data_prob", None),
            )

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> None:
        if not self.main:
            return
        state = {
            "schedule": self.schedule.state_dict(),
            "rng": ckpt.rng_state(),
            "data_position": self.position,
            "epoch": self.position // max(1, len(self.data.train)),
            "regime": self.regime.state_dict(),
            **({"ctkd": {"tau": self.ctkd.value}} if self.ctkd is not None else {}),
            "world_size": self.dist.world,
            "time": utc_now(),
        }
        path = ckpt.save_checkpoint(
            self.run.checkpoints, self.step, self.student, self.optimizer, self.scheduler, state
        )
        self.last_checkpoint = self.step
        removed = ckpt.prune_checkpoints(self.run.checkpoints, self.config.keep_checkpoints)
        self.run.event(
            self.step,
            "checkpoint",
            f"saved {path.name}",
            path=str(path.relative_to(self.run.path)),
            pruned=[p.name for p in removed],
        )
        self._write_running_status()

    # ------------------------------------------------------------------ probes and evaluation
    def _probe(self) -> None:
        """Rows for tokens.parquet / gradients.parquet on the fixed probe and gradient batches."""
        if not self.main or not self.config.probe_interval:
            return
        if self.tokens_frame is not None and (self.tokens_frame["step"] == self.step).any():
            return  # already probed (a resumed run)
        from adakd.probes import probe_gradient_groups, probe_tokens, teacher_valid_logits

        c = self.config
        started = time.perf_counter()
        ratio = float(self.schedule.ratio)
        probe_batch = {k: v.to(self.device) for k, v in self.data.probe_batch.items()}
        grad_batch = {k: v.to(self.device) for k, v in self.data.gradient_batch.items()}
        if self.teacher_probe_logits is None:
            # The teacher is frozen and the batches fixed: its logits never change, so one teacher
            # forward per batch per process instead of one per probe. Kept on the model device
            # (N·V·4 bytes each; demo ≈ 39 MiB for both, gpt2-dolly's 8 + 16 examples a few
            # hundred MiB), which is small next to the models and their optimiser state.
            self.teacher_probe_logits = {
                "probe": teacher_valid_logits(self.teacher, probe_batch),
                "gradient": teacher_valid_logits(self.teacher, grad_batch),
            }
        tokens = probe_tokens(
            self.student,
            self.teacher,
            probe_batch,
            self.tokenizer,
            step=self.step,
            ratio=ratio,
            c=c.idts_c if c.idts != "off" else 0.0,
            base_temperature=c.base_temperature,
            inverse=c.idts == "inverse",
            teacher_logits=self.teacher_probe_logits["probe"],
        )
        grads = probe_gradient_groups(
            self.student,
            self.teacher,
            grad_batch,
            step=self.step,
            ratio=ratio,
            divergence=c.divergence,
            divergence_params=c.divergence_params or None,
            teacher_logits=self.teacher_probe_logits["gradient"],
        )
        self.tokens_frame = (
            tokens if self.tokens_frame is None else pd.concat([self.tokens_frame, tokens], ignore_index=True)
        )
        self.gradients_frame = (
            grads if self.gradients_frame is None else pd.concat([self.gradients_frame, grads], ignore_index=True)
        )
        self.run.write_parquet(TOKENS, self.tokens_frame)
        self.run.write_parquet(GRADIENTS, self.gradients_frame)
        self.run.event(self.step, "probe", f"probed {len(tokens)} tokens in {time.perf_counter() - started:.1f}s")

    def _evaluate_initial(self) -> None:
        self._evaluate("teacher", self.teacher)
        self._evaluate("student_init", self.student)

    def _evaluate(self, model_name: str, model: PreTrainedModel) -> None:
        c = self.config
        if not self.main or c.eval_examples == 0 or (self.step, model_name) in self.done_evals:
            return
        from adakd.eval_cache import evaluate_with_cache
        from adakd.evaluation import evaluate_model, protocol_settings

        settings = protocol_settings(c, self.data.pad_id)
        cached = False
        with autocast(self.device, self.dtype):
            if model_name in SHARED_MODELS:  # the same in every arm of a study: computed once
                record, cached = evaluate_with_cache(
                    model,
                    self.tokenizer,
                    self.data.eval_sets,
                    step=self.step,
                    model_name=model_name,
                    teacher=self.teacher,
                    settings=settings,
                    device=self.device,
                    dtype=self.dtype,
                )
            else:
                record = evaluate_model(
                    model,
                    self.tokenizer,
                    self.data.eval_sets,
                    step=self.step,
                    model_name=model_name,
                    teacher=self.teacher,
                    **settings,
                )
        self.run.append(EVAL, record)
        self.done_evals.add((self.step, model_name))
        how = "cached" if cached else f"{record['seconds']:.0f}s"
        self.run.event(
            self.step,
            "eval",
            f"{model_name} ROUGE-L {record['rouge_l_avg']:.2f} ({how})",
            model=model_name,
            rouge_l_avg=record["rouge_l_avg"],
            cached=cached,
        )
