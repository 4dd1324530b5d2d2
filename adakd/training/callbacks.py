"""What a training run records besides its optimiser steps: the run directory's status and
metrics, the token and gradient probes, and the ROUGE-L evaluations (docs/contracts.md).

They are callbacks, so that the project's own loop (``adakd.training.trainer``) and TRL's
``DistillationTrainer`` (``adakd.integrations.trl_distillation``) write the same run directory and the
dashboard watches either. A trainer keeps one ``RunView`` up to date and calls, in order::

    on_begin(view)             before the first optimiser step of this process
                               (step 0 of a new run, or the step a resumed run restarts from)
    on_step_end(view, record)  after each optimiser step; record = the step's metrics line
                               (plus "skipped": no update was made, "stop": the run stops here)
    on_end(view, state)        the loop ended: state "finished" or "stopped"

A run that raises is recorded by its trainer with ``record_failure`` (status and event).

Only rank 0 writes (``view.main``); every rank calls the callbacks, so a callback that needs a
collective (DistiLLM's validation loss) can run one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from adakd.runs.metric_gaps import run_step_problems
from adakd.runs.rundir import EVAL, GRADIENTS, METRICS, TOKENS, move_aside
from adakd.runs.timestamps import utc_now
from adakd.training.device import autocast

if TYPE_CHECKING:  # for the annotations only: importing transformers at module load costs seconds
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from adakd.config import RunConfig
    from adakd.runs.rundir import RunDir
    from adakd.training.runsetup import TrainData

log = logging.getLogger(__name__)

STATUS_EVERY_S = 2.0  # status.json (an fsync'ed rewrite) at most this often while running
SHARED_MODELS = (
    "teacher",
    "student_init",
)  # evaluation records every run of a study shares (adakd/evaluation/cache.py)


@dataclass
class RunView:
    """What the callbacks read of one training process; its trainer keeps `step`, `ratio` and
    `last_checkpoint` current."""

    config: RunConfig
    run: RunDir
    main: bool  # rank 0: the only process that writes the run directory
    device: torch.device
    dtype: torch.dtype  # the autocast dtype
    teacher: PreTrainedModel
    student: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    data: TrainData
    step: int = 0  # optimiser steps done
    ratio: float = 1.0  # the LATF ratio r the next step will use
    last_checkpoint: int | None = None
    rank: int = 0
    world: int = 1


def step_record(
    step: int,
    sums: torch.Tensor,
    n_micro: int,
    *,
    ratio: float,
    schedule: Any,
    lr: float,
    grad_norm: float | None,
    seconds: float,
) -> dict[str, Any]:
    """The metrics line of one optimiser step (docs/contracts.md) from its host-side sums over the
    ``n_micro`` micro-batches of all ranks, in the order both trainers keep them: loss, kd, ce,
    Σ τ over the selected tokens, n_selected, n_valid, n_tokens. loss, kd and ce become means over
    the micro-batches, mean_tau a mean over the selected tokens; r is the one the step used."""
    loss, kd, ce = (sums[i].item() / n_micro for i in range(3))
    n_selected, n_valid, n_tokens = (int(sums[i].item()) for i in (4, 5, 6))
    return {
        "step": step,
        "loss": loss,
        "kd": kd,
        "ce": ce,
        "ratio": ratio,
        "next_ratio": float(schedule.ratio),
        "ema": getattr(schedule, "ema", None),
        "ref": getattr(schedule, "ref", None),
        "mean_tau": sums[3].item() / n_selected if n_selected else None,
        "n_valid": n_valid,
        "n_selected": n_selected,
        "lr": lr,
        "grad_norm": grad_norm,
        "tokens_per_s": n_tokens / seconds if seconds > 0 else None,
        "step_seconds": seconds,
        "time": utc_now(),
    }


class RunCallback:
    """A no-op for every hook; subclasses override the hooks they need."""

    def on_begin(self, view: RunView) -> None:
        pass

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        pass

    def on_end(self, view: RunView, state: str) -> None:
        pass


def call_all(callbacks: list[RunCallback], hook: str, view: RunView, *args: Any) -> None:
    """Call `hook` on each callback in list order (the order is the contract: see adakd.training.trainer)."""
    for callback in callbacks:
        getattr(callback, hook)(view, *args)


def failure_message(err: BaseException) -> str:
    """A failure in one line ("interrupted" for Ctrl-C)."""
    from adakd.runs.failures import describe

    return "interrupted" if isinstance(err, KeyboardInterrupt) else describe(err)


def record_failure(
    run: RunDir, err: BaseException, *, step: int, total_steps: int, last_checkpoint: int | None
) -> None:
    """status.json "failed" and a ``failed`` event with the traceback (rank 0 calls it). A full or
    read-only disk is logged, not raised: the dead pid then reads as crashed."""
    import traceback

    message = failure_message(err)
    try:
        run.set_status("failed", step=step, total_steps=total_steps, error=message, last_checkpoint=last_checkpoint)
        trace = "".join(traceback.format_exception(err))
        run.event(step, "failed", message, error=message, traceback=trace)
    except OSError as write_err:
        log.error("could not record the failure in %s: %s", run.path, write_err)


def write_running_status(view: RunView) -> None:
    view.run.set_status(
        "running", step=view.step, total_steps=view.config.max_steps, last_checkpoint=view.last_checkpoint
    )


def cut_records_at(view: RunView, probes: TokenProbes, evaluation: Evaluation) -> list[str]:
    """A resumed run (rank 0) continues its files from `view.step`: later JSONL lines and probe
    rows are dropped, the probes and evaluation learn what is already written, and an unreadable
    parquet file is kept aside (a new one starts). Returns the problems found, for the caller to
    report as warnings (never silent: damaged data is kept aside, not replaced)."""
    run, step = view.run, view.step
    problems = run.truncate_after(step)
    frames = {}
    for name in (TOKENS, GRADIENTS):
        frame = run.read_parquet(name)
        if frame is None and run.file(name).exists():  # unreadable: keep it, start a new one
            kept = move_aside(run.file(name))
            problems.append(f"{name} is unreadable: kept as {kept.name}; probes start a new file")
        elif frame is not None:
            frame = frame[frame["step"] <= step].reset_index(drop=True)
            run.write_parquet(name, frame)
        frames[name] = frame
    probes.tokens_frame, probes.gradients_frame = frames[TOKENS], frames[GRADIENTS]
    evaluation.done = {(int(r["step"]), r["model"]) for r in run.read_eval()}
    return problems + run_step_problems(run)


class RunRecorder(RunCallback):
    """status.json, metrics.jsonl and the end-of-run events.

    metrics.jsonl gets a step's record every ``log_interval`` steps and at the last step (a
    skipped step is in events.jsonl instead); status.json is rewritten at most every
    ``STATUS_EVERY_S`` seconds while running, and once with the final state.
    """

    def __init__(self) -> None:
        self._status_written = -float("inf")

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        c = view.config
        if not view.main:
            return
        if not record.get("skipped") and (view.step % c.log_interval == 0 or view.step == c.max_steps):
            view.run.append(METRICS, {k: v for k, v in record.items() if k not in ("skipped", "stop", "rank")})
        if view.step == 1 or view.step % max(c.log_interval, c.max_steps // 20) == 0:
            log.info(
                "step %d/%d loss %.4f r %.3f tau %.3f %.0f tok/s",
                view.step,
                c.max_steps,
                record["loss"],
                record["ratio"],
                record.get("mean_tau") or float("nan"),
                record.get("tokens_per_s") or 0.0,
            )
        if time.monotonic() - self._status_written >= STATUS_EVERY_S:
            write_running_status(view)
            self._status_written = time.monotonic()

    def on_end(self, view: RunView, state: str) -> None:
        if not view.main:
            return
        c = view.config
        view.run.set_status(state, step=view.step, total_steps=c.max_steps, last_checkpoint=view.last_checkpoint)
        if state == "stopped":
            view.run.event(view.step, "stopped", f"stopped on request after step {view.step}")
        else:
            view.run.event(view.step, "finished", f"finished {c.max_steps} steps")


class StepHook(RunCallback):
    """A plain function called after every optimiser step on every rank with the step's record
    plus "rank" (the CLI draws its progress bar from it)."""

    def __init__(self, function: Callable[[dict], None]) -> None:
        self.function = function

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        self.function({**record, "rank": view.rank})


@dataclass
class TokenProbes(RunCallback):
    """tokens.parquet and gradients.parquet: every probe token's difficulty, group and τ, and the
    gradient-norm share of each group (adakd.training.probes), at step 0 and every ``probe_interval`` steps.

    `tokens_frame` / `gradients_frame` hold the files so far (a resumed run passes them in, cut
    at its checkpoint). The frozen teacher's logits on the fixed batches never change, so they
    are computed at the first probe of this process and reused.
    """

    tokens_frame: pd.DataFrame | None = None
    gradients_frame: pd.DataFrame | None = None
    teacher_logits: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    def on_begin(self, view: RunView) -> None:
        if view.step == 0:
            self.probe(view)

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        interval = view.config.probe_interval
        if interval and view.step % interval == 0:
            self.probe(view)

    def probe(self, view: RunView) -> None:
        if not view.main or not view.config.probe_interval:
            return
        if self.tokens_frame is not None and (self.tokens_frame["step"] == view.step).any():
            return  # already probed (a resumed run)
        from adakd.training.probes import probe_gradient_groups, probe_tokens, teacher_valid_logits

        c = view.config
        started = time.perf_counter()
        probe_batch = {k: v.to(view.device) for k, v in view.data.probe_batch.items()}
        grad_batch = {k: v.to(view.device) for k, v in view.data.gradient_batch.items()}
        if self.teacher_logits is None:
            # Kept on the model device (N·V·4 bytes each; demo ≈ 39 MiB for both, gpt2-dolly's
            # 8 + 16 examples a few hundred MiB), small next to the models and their optimiser state.
            self.teacher_logits = {
                "probe": teacher_valid_logits(view.teacher, probe_batch),
                "gradient": teacher_valid_logits(view.teacher, grad_batch),
            }
        tokens = probe_tokens(
            view.student,
            view.teacher,
            probe_batch,
            view.tokenizer,
            step=view.step,
            ratio=view.ratio,
            c=c.idts_c if c.idts != "off" else 0.0,
            base_temperature=c.base_temperature,
            inverse=c.idts == "inverse",
            teacher_logits=self.teacher_logits["probe"],
        )
        grads = probe_gradient_groups(
            view.student,
            view.teacher,
            grad_batch,
            step=view.step,
            ratio=view.ratio,
            divergence=c.divergence,
            divergence_params=c.divergence_params or None,
            teacher_logits=self.teacher_logits["gradient"],
        )
        self.tokens_frame = (
            tokens if self.tokens_frame is None else pd.concat([self.tokens_frame, tokens], ignore_index=True)
        )
        self.gradients_frame = (
            grads if self.gradients_frame is None else pd.concat([self.gradients_frame, grads], ignore_index=True)
        )
        view.run.write_parquet(TOKENS, self.tokens_frame)
        view.run.write_parquet(GRADIENTS, self.gradients_frame)
        view.run.event(view.step, "probe", f"probed {len(tokens)} tokens in {time.perf_counter() - started:.1f}s")


@dataclass
class Evaluation(RunCallback):
    """eval.jsonl: ROUGE-L and the held-out measures (adakd.evaluation.evaluate) of the teacher and the
    untrained student at step 0, of the student every ``eval_interval`` steps and at the last step.

    `done` holds the (step, model) pairs already in eval.jsonl (a resumed run passes them in).
    The teacher's and the untrained student's records are shared by every arm of a study and
    come from adakd.evaluation.cache.
    """

    done: set[tuple[int, str]] = field(default_factory=set)

    def on_begin(self, view: RunView) -> None:
        if view.step == 0:
            self.evaluate(view, "teacher", view.teacher)
            self.evaluate(view, "student_init", view.student)

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        c = view.config
        if record.get("stop"):  # a stopping step is not evaluated: the resumed run goes on
            return
        if view.step == c.max_steps or (c.eval_interval and view.step % c.eval_interval == 0):
            self.evaluate(view, "student", view.student)

    def evaluate(self, view: RunView, model_name: str, model: PreTrainedModel) -> None:
        c = view.config
        if not view.main or c.eval_examples == 0 or (view.step, model_name) in self.done:
            return
        from adakd.evaluation.cache import evaluate_with_cache
        from adakd.evaluation.evaluate import evaluate_model, protocol_settings

        settings = protocol_settings(c, view.data.pad_id)
        cached = False
        with autocast(view.device, view.dtype):
            if model_name in SHARED_MODELS:  # the same in every arm of a study: computed once
                record, cached = evaluate_with_cache(
                    model,
                    view.tokenizer,
                    view.data.eval_sets,
                    step=view.step,
                    model_name=model_name,
                    teacher=view.teacher,
                    settings=settings,
                    device=view.device,
                    dtype=view.dtype,
                )
            else:
                record = evaluate_model(
                    model,
                    view.tokenizer,
                    view.data.eval_sets,
                    step=view.step,
                    model_name=model_name,
                    teacher=view.teacher,
                    **settings,
                )
        view.run.append(EVAL, record)
        self.done.add((view.step, model_name))
        how = "cached" if cached else f"{record['seconds']:.0f}s"
        view.run.event(
            view.step,
            "eval",
            f"{model_name} ROUGE-L {record['rouge_l_avg']:.2f} ({how})",
            model=model_name,
            rouge_l_avg=record["rouge_l_avg"],
            cached=cached,
        )
