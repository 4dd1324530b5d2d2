"""The training loop: `train(config, run_dir)` and `resume(run_dir)`.

One optimiser step, read top to bottom in `_Run._train_step`:

    (latf_pool = step: first score every micro-batch of the step, on every rank, with a student
     forward without gradient, and select over all of them: `_pool_step`, docs/method.md §2.2)
    for each of grad_accum micro-batches (the next examples of the seeded data order):
        teacher forward   (eval mode, no grad)          h_T [B, T, H_T]  (skipped for SFT, kd_ratio = 0)
        student forward   (train mode)                  h_S [B, T, H_S]
        targets, mask = next_token_targets(labels)      positions [:, :-1] are scored
        out = adakd_loss_from_hidden(h_S[:, :-1], h_T[:, :-1], mask, head_S, head_T, ratio=r, ...)
              (loss_input = logits: z = model(...).logits [B, T, V] and adakd_loss(z_S, z_T, ...);
               CTKD: τ = ctkd(λ_step); latf_pool = step: pooled = this micro-batch's share)
        (out.loss / grad_accum).backward()
    mean loss over micro-batches (and ranks); non-finite -> skip the update (event)
    clip grad norm (student only), AdamW step (student and CTKD's τ), LR scheduler step
    r <- schedule.update(mean AdaKD loss)              once per optimiser step, same on all ranks

The run directory (docs/contracts.md) is written by rank 0 only: config.json, status.json,
metrics.jsonl, events.jsonl, tokens/gradients.parquet (probes), eval.jsonl, checkpoints/.
SIGINT/SIGTERM finish the current step, checkpoint and mark the run `stopped`; an exception
marks it `failed` and re-raises. Data-parallel: run the same command under
`torchrun --nproc_per_node N python -m adakd train ...` (gloo on CPU, nccl on CUDA).
After each step the loop calls its callbacks in this order (adakd/training/callbacks.py, which TRL's
trainer shares through adakd/integrations/trl_distillation.py):

    RunRecorder     metrics.jsonl, status.json          StepHook     the caller's on_step
    (stop check)    a signal that arrived by now stops at this step
    TokenProbes     tokens/gradients.parquet            ValidationLoss  DistiLLM's φ (regime distillm)
    Checkpointing   checkpoints/ (every checkpoint_interval, the last step, a stop)
    Evaluation      eval.jsonl (after the checkpoint, so a crash in it loses no step)

Set-up (models, data, optimiser, config.json) is adakd/training/runsetup.py; stopping on a signal is
adakd/training/signals.py.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from adakd.config import RunConfig
from adakd.data.tokenize import collate, next_token_targets
from adakd.method.hidden_loss import adakd_loss_from_hidden, token_scores_from_hidden
from adakd.method.lm_head import LastHidden, LMHead
from adakd.method.loss import adakd_loss, token_scores
from adakd.method.pooled_selection import gather_scores
from adakd.method.temperature import CTKDTemperature, ctkd_strength
from adakd.runs.rundir import CONFIG, RunDir
from adakd.runs.runlock import holds_lock, new_run_lock, run_lock
from adakd.runs.timestamps import utc_now
from adakd.training import checkpoint as ckpt
from adakd.training.callbacks import (
    Evaluation,
    RunCallback,
    RunRecorder,
    RunView,
    StepHook,
    TokenProbes,
    call_all,
    cut_records_at,
    failure_message,
    record_failure,
    step_record,
    write_running_status,
)
from adakd.training.device import Distributed, autocast, dtype_name, init_distributed
from adakd.training.regimes import make_regime, merge_infos
from adakd.training.runsetup import (
    DataOrder,
    build_models,
    build_optimizer,
    build_scheduler,
    loss_settings,
    pooled_shares,
    preflight,
    prepare_data,
    ratio_schedule,
    run_metadata,
)
from adakd.training.signals import StopRequest
from adakd.training.validation_loss import ValidationLoss

log = logging.getLogger(__name__)

StepCallback = Callable[[dict], None]


def train(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    name: str | None = None,
    preset: str | None = None,
    command: list[str] | None = None,
    on_step: StepCallback | None = None,
) -> Path:
    """Train a student as `config` says into the new run directory `run_dir`; return its path.

    Validates everything checkable (paths, divergence parameters, device) before creating the
    directory, so bad input writes nothing. Rank 0 holds the run's lock (adakd.runs.runlock) from
    before the models load to the end, so no other process can write the same folder.
    `on_step(record)` is called on every rank after each optimiser step with that step's
    metrics record (plus "rank"); the CLI draws its progress bar from it.
    """
    preflight(config)
    if config.trainer == "trl":  # TRL's DistillationTrainer with this project's loss and callbacks
        from adakd.integrations.trl_distillation import train_with_trl

        return train_with_trl(config, run_dir, name=name, preset=preset, on_step=on_step)
    run = RunDir(run_dir)
    first_rank = int(os.environ.get("RANK", "0")) == 0  # only rank 0 will write the directory
    with new_run_lock(run.path) if first_rank else nullcontext():
        dist_info = init_distributed(config)
        session = _Run(config, run, dist_info, on_step=on_step)
        return session.start(name=name or run.name, preset=preset, command=command or sys.argv)


def check_resumable(run_dir: str | os.PathLike) -> tuple[RunConfig, tuple[int, Path] | None]:
    """(config, latest checkpoint) of a run that can be resumed; ValueError saying why not."""
    run = RunDir(run_dir)
    meta = run.read_config()
    if not meta or "config" not in meta:
        raise ValueError(f"{run.path} has no readable config.json: not a run directory")
    try:
        config = RunConfig.from_record(meta["config"])
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{run.file(CONFIG)} holds settings that are no longer valid ({err}): start a new run"
        ) from None
    status = run.read_status() or {}
    if run.effective_state() == "running" and not holds_lock(run.path):
        raise ValueError(f"{run.path} is still running (pid {status.get('pid')}): stop it first")
    if config.trainer == "trl":
        from adakd.integrations.trl_distillation import last_trl_checkpoint

        found = last_trl_checkpoint(run.path)
    else:
        found = ckpt.latest_checkpoint(run.checkpoints)
    if status.get("state") == "finished" and found and found[0] >= config.max_steps:
        raise ValueError(f"{run.path} already finished all {config.max_steps} steps; nothing to resume")
    preflight(config)
    return config, found


def resume(run_dir: str | os.PathLike, *, on_step: StepCallback | None = None) -> Path:
    """Continue the run in `run_dir` from its latest complete checkpoint.

    Restores weights, optimiser, scheduler, RNG states, data position and ratio-schedule state;
    drops log lines written after that checkpoint so metrics/events have no duplicates.
    Without any checkpoint the run restarts from step 0 (its set-up is deterministic).
    Rank 0 holds the run's lock throughout; leftovers of a killed writer are removed first.
    """
    first_rank = int(os.environ.get("RANK", "0")) == 0
    with run_lock(run_dir, create=False) if first_rank else nullcontext():
        config, found = check_resumable(run_dir)
        if config.trainer == "trl":
            from adakd.integrations.trl_distillation import resume_with_trl

            if first_rank:
                ckpt.clean_leftovers(Path(run_dir))
            return resume_with_trl(config, run_dir, on_step=on_step)
        run = RunDir(run_dir)
        session = _Run(config, run, init_distributed(config), on_step=on_step)
        session.created = True
        # until the checkpoint is restored, a failure is recorded against the run as it was
        status = run.read_status() or {}
        saved_step = status.get("step")
        session.step = saved_step if isinstance(saved_step, int) else 0
        session.last_checkpoint = status.get("last_checkpoint")
        # why the run needs resuming, for its resume event: "stopped", "failed", "crashed" (marked
        # running, process gone: killed), ... and the step it had reached then (its later log
        # lines, a failure's event included, are dropped when the checkpoint is restored)
        session.interrupted = {"previous_state": run.effective_state(), "previous_step": session.step}
        if first_rank:
            ckpt.clean_leftovers(run.path)
        return session.start_resumed(found)


class _Run:
    """Everything one training process holds; `start`/`start_resumed` run it to the end."""

    def __init__(self, config: RunConfig, run: RunDir, dist_info: Distributed, *, on_step: StepCallback | None) -> None:
        self.config, self.run, self.dist = config, run, dist_info
        self.main = dist_info.rank == 0
        self.on_step = on_step
        # until set-up builds the view: the step and checkpoint a failure is recorded against
        self.step, self.last_checkpoint = 0, None
        self.view: RunView | None = None
        self.interrupted: dict = {}  # resume(): the state and step the run was left in
        self.position = 0
        self.stop = StopRequest()
        self.created = False  # whether this process may record into the run directory
        self.recorder = RunRecorder()
        self.probes = TokenProbes()
        self.evaluation = Evaluation()

    # ------------------------------------------------------------------ set-up
    def _setup(self) -> None:
        c = self.config
        torch.manual_seed(c.seed)
        self.device, self.dtype = self.dist.device, self.dist.dtype
        self.teacher, self.student, self.tokenizer = build_models(c, self.device)
        if self.device.type == "cuda" and self.dtype != torch.float32:
            # the frozen teacher once in the autocast dtype: autocast would otherwise re-cast its fp32
            # weights at every forward and keep both copies (the student trains in fp32 + autocast)
            self.teacher.to(self.dtype)
        self.data = prepare_data(c, self.tokenizer)
        self.pad_id = self.data.pad_id
        self.order = DataOrder(len(self.data.train), c.seed)
        # CTKD's learnable temperature trains with the student (docs/method.md §3.1)
        self.ctkd = CTKDTemperature(c.base_temperature).to(self.device) if c.ctkd else None
        self.optimizer = build_optimizer(c, self.student, extra=self.ctkd)
        self.scheduler = build_scheduler(c, self.optimizer)
        self.schedule = ratio_schedule(c)
        # ground truth passes batches through; gkd / distillm swap in student samples
        self.regime = make_regime(c, self.pad_id, tokenizer=self.tokenizer, rank=self.dist.rank, device=self.device)
        # What the loss reads (loss_input): the last hidden states and the heads, or the logits.
        self.hidden = c.loss_input == "hidden"
        self.teacher_forward: torch.nn.Module = LastHidden(self.teacher) if self.hidden else self.teacher
        student_forward: torch.nn.Module = LastHidden(self.student) if self.hidden else self.student
        head_dtype = self.dtype if self.dtype != torch.float32 else None  # the autocast dtype of the products
        self.student_head = LMHead.of(self.student, head_dtype) if self.hidden else None
        self.teacher_head = LMHead.of(self.teacher, head_dtype) if self.hidden else None
        self.model: torch.nn.Module = student_forward  # or its DistributedDataParallel wrapper
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(student_forward, device_ids=ids)
        self.view = RunView(
            config=c,
            run=self.run,
            main=self.main,
            device=self.device,
            dtype=self.dtype,
            teacher=self.teacher,
            student=self.student,
            tokenizer=self.tokenizer,
            data=self.data,
            step=self.step,
            ratio=float(self.schedule.ratio),
            last_checkpoint=self.last_checkpoint,
            rank=self.dist.rank,
            world=self.dist.world,
        )
        self.validation = ValidationLoss(self.regime) if c.regime == "distillm" else None
        # the order of the callbacks is the contract in this module's docstring
        self.callbacks: list[RunCallback] = [self.recorder]
        if self.on_step is not None:
            self.callbacks.append(StepHook(self.on_step))
        self.callbacks += [_StopCheck(self), self.probes]
        if self.validation is not None:
            self.callbacks.append(self.validation)
        self.callbacks += [_Checkpointing(self), self.evaluation]

    def start(self, *, name: str, preset: str | None, command: list[str]) -> Path:
        with self.stop:
            try:
                # models and data first: input that fails to load leaves no run directory behind
                self._setup()
                if self.main:
                    self.run.create()
                    self.created = True
                    self.run.set_status("running", step=0, total_steps=self.config.max_steps)
                    meta = run_metadata(
                        self.config,
                        name=name,
                        preset=preset,
                        command=command,
                        device=self.device,
                        dtype=self.dtype,
                        reason=self.dist.reason,
                        teacher=self.teacher,
                        student=self.student,
                    )
                    self.run.write_json(CONFIG, meta)
                log.info(
                    "run %s: %d steps on %s (%s): %s",
                    self.run.path,
                    self.config.max_steps,
                    self.device,
                    dtype_name(self.dtype),
                    self.dist.reason,
                )
                if self.main:
                    self.run.event(
                        0,
                        "start",
                        f"training {name}: {self.config.max_steps} steps on "
                        f"{self.device} ({dtype_name(self.dtype)}); {self.dist.reason}",
                    )
                return self._loop()
            except BaseException as err:
                self._fail(err)
                raise

    def start_resumed(self, found: tuple[int, Path] | None) -> Path:
        with self.stop:
            try:
                self._setup()
                self._restore(found)
                return self._loop()
            except BaseException as err:
                self._fail(err)
                raise

    def _restore(self, found: tuple[int, Path] | None) -> None:
        assert self.view is not None
        step, last = 0, None  # the view keeps the run as it was until this succeeds
        if found is not None:
            step, path = found
            state = ckpt.load_checkpoint(path, self.student, self.optimizer, self.scheduler, self.device)
            try:
                self.schedule.load_state_dict(state["schedule"])
                if self.ctkd is not None:
                    with torch.no_grad():
                        self.ctkd.tau.fill_(float(state["ctkd"]["tau"]))
                self.position = int(state["data_position"])
                self.regime.load_state_dict(state["regime"])
                ckpt.set_rng_state(state["rng"])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
                # the library's own words ("not enough values to unpack") would not help here
                malformed = ValueError("a saved state is missing or malformed")
                raise ckpt.damaged(path / ckpt.STATE_FILE, malformed) from err
            last = step
        self.view.step, self.view.last_checkpoint = step, last
        self.view.ratio = float(self.schedule.ratio)
        if self.main:
            problems = cut_records_at(self.view, self.probes, self.evaluation)
            if self.validation is not None:
                self.validation.validated = {
                    int(e["step"]) for e in self.run.read_events() if e.get("kind") == "validation"
                }
            write_running_status(self.view)
            where = f"checkpoint step {step}" if found else "the start (no checkpoint was written)"
            self.run.event(
                step, "resume", f"resumed from {where}", checkpoint=found and str(found[1]), **self.interrupted
            )
            for problem in problems:  # reported, never silent: the damaged data is kept aside
                log.warning("%s: %s", self.run.path, problem)
                self.run.event(step, "warning", problem)

    def _fail(self, err: BaseException) -> None:
        if not self.created:  # refused during set-up: nothing to record, the caller reports it
            return
        # before the view exists (set-up failed while resuming): the run as it was
        view = self.view
        step, last = (view.step, view.last_checkpoint) if view is not None else (self.step, self.last_checkpoint)
        log.error("run failed at step %d: %s", step, failure_message(err))
        if self.main:
            record_failure(self.run, err, step=step, total_steps=self.config.max_steps, last_checkpoint=last)

    # ------------------------------------------------------------------ the loop
    def _loop(self) -> Path:
        """The straight loop: one optimiser step, then the callbacks (module docstring)."""
        view, c = self.view, self.config
        assert view is not None
        call_all(self.callbacks, "on_begin", view)
        while view.step < c.max_steps:
            record = self._train_step()
            view.ratio = record["next_ratio"]
            call_all(self.callbacks, "on_step_end", view, record)
            if record["stop"]:
                call_all(self.callbacks, "on_end", view, "stopped")
                return self.run.path
        call_all(self.callbacks, "on_end", view, "finished")
        return self.run.path

    def _checkpoint(self) -> None:
        view = self.view
        assert view is not None
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
            self.run.checkpoints, view.step, self.student, self.optimizer, self.scheduler, state
        )
        view.last_checkpoint = view.step
        removed = ckpt.prune_checkpoints(self.run.checkpoints, self.config.keep_checkpoints)
        self.run.event(
            view.step,
            "checkpoint",
            f"saved {path.name}",
            path=str(path.relative_to(self.run.path)),
            pruned=[p.name for p in removed],
        )
        write_running_status(view)

    def _micro_batch(self) -> dict[str, torch.Tensor]:
        """The next `batch_size` examples of this rank: global positions are dealt out in
        rank-sized slices, so the union over ranks is the single-process order."""
        bs, world = self.config.batch_size, self.dist.world
        start = self.position + self.dist.rank * bs
        batch = collate([self.data.train[self.order.index(start + j)] for j in range(bs)], self.pad_id)
        self.position += bs * world
        return {k: v.to(self.device) for k, v in batch.items()}

    @staticmethod
    def _forward(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The last hidden states ``[B, T, H]`` (a ``LastHidden``) or the logits ``[B, T, V]``."""
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return out if isinstance(out, torch.Tensor) else out.logits

    def _prepared_micro_batch(self, micro: int) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The next micro-batch as the data regime trains on it (ground truth or student samples)."""
        assert self.view is not None
        batch = self._micro_batch()
        return self.regime.prepare(
            batch, step=self.view.step + 1, student=self.student, tokenizer=self.tokenizer, micro=micro
        )

    def _teacher_out(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The teacher's hidden states or logits for the batch; None for SFT (kd_ratio = 0)."""
        if self.config.kd_ratio == 0:
            return None
        with torch.no_grad(), autocast(self.device, self.dtype):
            return self._forward(self.teacher_forward, batch)

    def _pool_step(self, ratio: float) -> tuple[list[tuple[dict[str, torch.Tensor], dict[str, Any], Any]], list]:
        """latf_pool = step (docs/method.md §2.2): the step's micro-batches, each scored by a student
        forward without gradient, and LATF's selection and IDTS's τ over all of them and over every
        rank (micro-batch, then rank, then position: the data order, one batch of them). Returns each
        micro-batch with its regime info and teacher output (kept for the gradient pass) and this
        rank's shares of the selection."""
        c = self.config
        student = self.model.module if isinstance(self.model, DistributedDataParallel) else self.model
        prepared, parts = [], []
        for micro in range(c.grad_accum):
            batch, info = self._prepared_micro_batch(micro)
            teacher_out = self._teacher_out(batch)
            assert teacher_out is not None  # kd_ratio > 0
            with torch.no_grad(), autocast(self.device, self.dtype):
                student_out = self._forward(student, batch)
            targets, mask = next_token_targets(batch["labels"])
            scoring: dict[str, Any] = dict(indicator=c.indicator, labels=targets, topk=c.indicator_topk)
            if self.student_head is not None and self.teacher_head is not None:
                part = token_scores_from_hidden(
                    student_out[:, :-1], teacher_out[:, :-1], mask, self.student_head, self.teacher_head, **scoring
                )
            else:
                part = token_scores(student_out[:, :-1], teacher_out[:, :-1], mask, **scoring)
            del student_out
            prepared.append((batch, info, teacher_out))
            parts.append(part)
        pool = gather_scores(parts, self.dist.rank, self.dist.world)
        shares = pooled_shares(c, pool, ratio)
        mine = shares[self.dist.rank :: self.dist.world]  # gather_scores' order: micro-batch, then rank
        return prepared, mine

    def _train_step(self) -> dict[str, Any]:
        """One optimiser step (module docstring); its metrics record plus "skipped" and "stop"."""
        c = self.config
        assert self.view is not None
        started = time.perf_counter()
        ratio = float(self.schedule.ratio)
        self.student.train()
        self.optimizer.zero_grad(set_to_none=True)
        # the step's sums stay on the model device until the step ends: one host sync per step for
        # them (the loss itself syncs once per micro-batch for its row count); MPS has no float64
        sums = torch.zeros(9, dtype=torch.float64, device=self.device if self.device.type != "mps" else "cpu")
        infos: list[dict[str, Any]] = []
        strength = ctkd_strength(self.view.step, c.max_steps) if self.ctkd is not None else None
        ctkd_tau = self.ctkd.value if self.ctkd is not None else None
        # latf_pool = step: every micro-batch (of every rank) scored first, one selection over them
        prepared, shares = self._pool_step(ratio) if c.latf_pool == "step" and c.kd_ratio > 0 else ([], None)
        for micro in range(c.grad_accum):
            if prepared:
                batch, info, teacher_out = prepared[micro]
            else:
                batch, info = self._prepared_micro_batch(micro)
                teacher_out = self._teacher_out(batch)
            infos.append(info)
            sync: AbstractContextManager[Any] = nullcontext()
            if isinstance(self.model, DistributedDataParallel) and micro < c.grad_accum - 1:  # world > 1
                sync = self.model.no_sync()  # all-reduce gradients once, after the last micro-batch
            with sync:
                with autocast(self.device, self.dtype):
                    student_out = self._forward(self.model, batch)
                targets, mask = next_token_targets(batch["labels"])
                settings: dict[str, Any] = dict(
                    loss_settings(c, ratio),
                    labels=targets,
                    learned_temperature=self.ctkd(strength) if self.ctkd is not None else None,
                    pooled=shares[micro] if shares is not None else None,
                )
                teacher_rows = None if teacher_out is None else teacher_out[:, :-1]
                if self.student_head is not None:
                    out = adakd_loss_from_hidden(
                        student_out[:, :-1], teacher_rows, mask, self.student_head, self.teacher_head, **settings
                    )
                else:
                    out = adakd_loss(student_out[:, :-1], teacher_rows, mask, **settings)
                # backward even for a non-finite loss: in DDP every rank must join the all-reduce
                (out.loss / c.grad_accum).backward()
            tau_sum = torch.where(out.selected, out.temperature, 0.0).sum()  # no boolean indexing: no sync
            terms = [out.loss, out.kd, out.ce, tau_sum, out.selected.sum(), mask.sum(), batch["attention_mask"].sum()]
            sums[:7] += torch.stack([t.detach().to(sums.device, torch.float64) for t in terms])
        regime_info = merge_infos(infos)  # one metrics line per step: "mixed" when micro-batches differ
        sums[7] = float(self.stop.requested)
        sums[8] = ratio
        if self.dist.world > 1:
            if self.ctkd is not None and self.ctkd.tau.grad is not None:  # τ is outside DDP: average it here
                dist.all_reduce(self.ctkd.tau.grad)
                self.ctkd.tau.grad /= self.dist.world
            dist.all_reduce(sums)  # sum over ranks (gloo/nccl, on the model device); r must agree on every rank
        sums = sums.cpu()  # the step's one host sync for its bookkeeping
        if self.dist.world > 1:
            if abs(sums[8].item() - ratio * self.dist.world) > 1e-9 * self.dist.world:
                raise RuntimeError(f"ranks disagree on the LATF ratio at step {self.view.step + 1}")
        n_micro = c.grad_accum * self.dist.world
        loss, kd = sums[0].item() / n_micro, sums[1].item() / n_micro
        lr = self.optimizer.param_groups[0]["lr"]
        max_norm = c.max_grad_norm if c.max_grad_norm > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), max_norm).item()
        self.view.step += 1
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if skipped:
            self.optimizer.zero_grad(set_to_none=True)
            reason = "non-finite loss" if not math.isfinite(loss) else "non-finite gradient norm"
            log.warning("step %d skipped: %s (loss %s, grad norm %s)", self.view.step, reason, loss, grad_norm)
            if self.main:
                self.run.event(
                    self.view.step,
                    "skipped_step",
                    f"{reason}; no update",
                    reason=reason,
                    loss=None,
                    grad_norm=None if not math.isfinite(grad_norm) else grad_norm,
                )
        else:
            self.optimizer.step()
            self.schedule.update(kd)
        self.scheduler.step()  # the LR follows the step count, skipped steps included
        seconds = time.perf_counter() - started
        next_ratio = float(self.schedule.ratio)
        if self.main and next_ratio != ratio and c.latf == "adaptive":  # scheduled moves are in metrics
            self.run.event(
                self.view.step, "ratio_change", f"r {ratio:.4f} -> {next_ratio:.4f}", old=ratio, new=next_ratio
            )
        record = step_record(
            self.view.step,
            sums,
            n_micro,
            ratio=ratio,
            schedule=self.schedule,
            lr=lr,
            grad_norm=grad_norm,
            seconds=seconds,
        )
        record.update(regime_info)
        if self.ctkd is not None:  # the τ this step used and its GRL strength λ
            record.update(ctkd_tau=ctkd_tau, ctkd_lambda=strength)
        return {**record, "skipped": skipped, "stop": sums[7].item() > 0}


class _StopCheck(RunCallback):
    """Alone, a signal that arrived by now (during on_step, say) stops at this step. Under DDP
    every rank stops at the step whose all-reduced flag says so (the record's "stop")."""

    def __init__(self, session: _Run) -> None:
        self.session = session

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        if view.world == 1 and self.session.stop.requested:
            record["stop"] = True


class _Checkpointing(RunCallback):
    """checkpoints/ every ``checkpoint_interval`` steps, at the last step and when the run stops."""

    def __init__(self, session: _Run) -> None:
        self.session = session

    def on_step_end(self, view: RunView, record: dict[str, Any]) -> None:
        c = view.config
        if (
            record["stop"]
            or view.step == c.max_steps
            or (c.checkpoint_interval and view.step % c.checkpoint_interval == 0)
        ):
            self.session._checkpoint()
