"""AdaKD inside TRL's ``DistillationTrainer`` (trl 1.16, pinned): ``AdaKDDistillationTrainer``.

TRL's trainer brings the ecosystem's machinery (``accelerate launch``, DeepSpeed/FSDP, PEFT, its
checkpoints and loggers); this subclass replaces its loss and keeps the rest:

* **Loss.** ``compute_loss`` is ``adakd.method.hidden_loss.adakd_loss_from_hidden`` on the student's and
  the teacher's last hidden states and their heads (LATF's selection, IDTS's τ and the base
  divergence of the ``RunConfig``), the same function the project's own loop calls, so the
  ``[B, T, V]`` logits never exist. Positions come from the attention mask, so TRL's left-padded
  prompts score exactly as the project's right-padded rows.
* **LATF across ranks.** r is constant within an optimiser step. After the step, the sums of
  every micro-batch on every rank are all-reduced and ``RatioSchedule.update(mean KD loss)``
  runs on the same number on every rank (a disagreement raises, as in adakd.training.trainer).
* **Checkpoints.** Each TRL checkpoint folder also holds ``adakd_state.json`` (the LATF
  schedule's state); resuming with ``train(resume_from_checkpoint=...)`` restores it.
* **Completions.** ``completions="dataset"`` (default) trains on the dataset's replies in the
  project's data order (``DataOrder`` with the run's seed), as the project's ground-truth regime;
  ``completions="student"`` keeps TRL's on-policy generation.
* **Run directory.** With ``run_dir``, rank 0 writes the project's run directory through the
  callbacks of adakd/training/callbacks.py (status, metrics, probes, evaluation, events), holding its lock
  for the whole run, so ``streamlit run app/main.py`` watches a TRL run like its own; the token
  explorer reads the trained student from TRL's checkpoint folders.
* **latf_pool.** "micro-batch" (the default) selects within each micro-batch; "step" scores every
  micro-batch of the step on every rank before the first gradient pass and selects over all of
  them (``pooled_selection``), as the project's loop does.

Not supported here (refused with a clear error): CTKD, data regimes other than ground truth with
dataset completions, ``loss_input="logits"`` and ``kd_ratio=0``.

Usage (see README, "Inside TRL's DistillationTrainer")::

    trainer = AdaKDDistillationTrainer.from_config(config, output_dir="out/trl", run_dir="runs/trl-demo")
    trainer.train()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import Sampler
from transformers import TrainerCallback
from trl import DistillationConfig, DistillationTrainer

from adakd.config import RunConfig
from adakd.data.tokenize import IGNORE_INDEX, next_token_targets
from adakd.method.hidden_loss import adakd_loss_from_hidden, token_scores_from_hidden
from adakd.method.lm_head import LMHead
from adakd.method.pooled_selection import PooledShare, gather_scores
from adakd.runs.rundir import CHECKPOINTS, CONFIG, RunDir, write_json_atomic
from adakd.runs.runlock import holds_lock, new_run_lock, run_lock
from adakd.training.callbacks import (
    Evaluation,
    RunCallback,
    RunRecorder,
    RunView,
    StepHook,
    TokenProbes,
    call_all,
    cut_records_at,
    record_failure,
    step_record,
    write_running_status,
)
from adakd.training.checkpoint import TRL_STATE_FILE, list_trl_checkpoints
from adakd.training.device import choose_device_and_dtype
from adakd.training.runsetup import (
    DataOrder,
    TrainData,
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

log = logging.getLogger(__name__)

COMPLETIONS = ("dataset", "student")


def check_supported(config: RunConfig, completions: str) -> None:
    """ValueError (one line saying what to change) for settings this integration does not run
    (``RunConfig`` itself refuses them with ``trainer = "trl"``)."""
    if completions not in COMPLETIONS:
        raise ValueError(f"completions must be one of {', '.join(COMPLETIONS)}, not {completions!r}")
    if completions == "student" and config.regime != "ground_truth":
        raise ValueError("completions='student' is TRL's own on-policy data: leave regime=ground_truth")
    dataclasses.replace(config, trainer="trl")  # RunConfig's own checks for trainer = "trl"


def distillation_args(config: RunConfig, output_dir: str | os.PathLike, **overrides: Any) -> DistillationConfig:
    """TRL's settings for the run `config` describes: the same steps, batch, accumulation, seed,
    clipping, logging and checkpoint intervals. (The optimiser and LR schedule are passed to the
    trainer as objects by ``from_config``, so they are the project's own.) `overrides` win."""
    device, dtype, _ = choose_device_and_dtype(config)
    values: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        logging_steps=config.log_interval,
        save_strategy="steps" if config.checkpoint_interval else "no",
        save_steps=config.checkpoint_interval or config.max_steps,
        save_total_limit=config.keep_checkpoints or None,
        report_to="none",
        remove_unused_columns=False,  # the rows carry their token ids
        use_cpu=device.type == "cpu",
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        disable_dropout=False,  # as the project's loop: the student trains in train mode
        # TRL's default is True (recompute activations in the backward: less memory, slower steps:
        # 1.14x the native step with it, 1.04x without, quick preset, benchmarks/bench_trl.py);
        # off, as the project's loop. Override it for models that do not fit otherwise.
        gradient_checkpointing=False,
        ddp_find_unused_parameters=False,  # every student parameter gets a gradient (DDP's own default)
        max_completion_length=config.gen_max_new_tokens,  # on-policy completions only
        temperature=config.gen_temperature,  # TRL's sampling temperature (on-policy); AdaKD's τ is its own
        dataloader_num_workers=0,
    )
    values.update(overrides)
    return DistillationConfig(**values)


def trl_rows(examples: list[dict], tokenizer) -> list[dict]:
    """TRL dataset rows from the project's encoded examples (``encode_example``): the prompt's
    text (TRL's on-policy generation reads it) and the prompt's and the reply's token ids."""
    rows = []
    for e in examples:
        p = e["prompt_length"]
        rows.append(
            {
                "prompt": tokenizer.decode(e["input_ids"][:p]),
                "prompt_ids": list(e["input_ids"][:p]),
                "completion_ids": list(e["input_ids"][p:]),
            }
        )
    return rows


class RowDataset(TorchDataset):
    """The rows as a map-style dataset: TRL's trainer indexes it through the sampler below, so a
    plain list serves (no Arrow table to build)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict:
        return self.rows[index]


class ProjectOrder(Sampler[int]):
    """The project's example order (``DataOrder``) in the index stream TRL's dataloader expects.

    TRL loads one generation batch of ``bs × grad_accum`` rows per rank and step and repeats it
    ``grad_accum`` times (its ``RepeatSampler``); accelerate hands rank r every world-th batch.
    Rank r's rows are ordered micro-batch by micro-batch exactly as the project's loop deals
    them (position ``p + m·bs·W + r·bs + j``), so with ``_prepare_inputs`` below (no shuffle)
    every micro-batch of every rank holds the examples the project's loop would give it.
    """

    def __init__(self, n: int, seed: int, batch_size: int, world: int, grad_accum: int, steps: int) -> None:
        self.order = DataOrder(n, seed)
        self.bs, self.world, self.accum, self.steps = batch_size, world, grad_accum, steps

    def __len__(self) -> int:
        return self.steps * self.accum * self.world * self.bs * self.accum

    def __iter__(self):
        bs, world, accum = self.bs, self.world, self.accum
        per_step = bs * world * accum
        for step in range(self.steps):
            base = step * per_step
            chunk = [
                self.order.index(base + m * bs * world + r * bs + j)
                for r in range(world)
                for m in range(accum)
                for j in range(bs)
            ]
            for _ in range(accum):
                yield from chunk


class AdaKDDistillationTrainer(DistillationTrainer):
    """TRL's ``DistillationTrainer`` with the AdaKD loss of `adakd` (a ``RunConfig``).

    Takes TRL's arguments plus: ``adakd`` (the method's settings: divergence, LATF, IDTS, ...),
    ``completions`` ("dataset" or "student", module docstring), ``run_dir`` (write a project run
    directory there) and ``data`` (the project's ``TrainData``: probe and evaluation sets for the
    run directory; built from ``adakd`` when omitted). ``from_config`` builds everything from one
    ``RunConfig``, as ``adakd train`` does.
    """

    def __init__(
        self,
        *args: Any,
        adakd: RunConfig,
        completions: str = "dataset",
        run_dir: str | os.PathLike | None = None,
        data: TrainData | None = None,
        preset: str | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        check_supported(adakd, completions)
        super().__init__(*args, **kwargs)
        c = self.adakd = adakd
        self.completions = completions
        self.ratio_schedule = ratio_schedule(c)
        self._sums = torch.zeros(7, dtype=torch.float64)  # loss, kd, ce, Σ τ_selected, selected, valid, tokens
        self._step_started = 0.0
        self._step_lr = 0.0
        self._grad_norm: float | None = None
        self._pool_shares: list[PooledShare] = []  # latf_pool = step: this rank's share per micro-batch
        self._pool_teacher: list[torch.Tensor] = []  # and the teacher's hidden states, scored once
        self.preset, self.name = preset, name
        self.stop = StopRequest()
        self._resuming = False
        self.run = RunDir(run_dir) if run_dir is not None else None
        self.view: RunView | None = None
        self.probes, self.evaluation = TokenProbes(), Evaluation()
        self.run_callbacks: list[RunCallback] = [RunRecorder(), self.probes, self.evaluation]
        if self.run is not None and data is None:
            data = prepare_data(c, self._tokenizer)
        self.data = data
        self.add_callback(_AdaKDSteps(self))

    @classmethod
    def from_config(
        cls,
        config: RunConfig,
        output_dir: str | os.PathLike,
        *,
        run_dir: str | os.PathLike | None = None,
        completions: str = "dataset",
        preset: str | None = None,
        name: str | None = None,
        **arg_overrides: Any,
    ) -> AdaKDDistillationTrainer:
        """Models, data, optimiser and LR schedule as ``adakd train`` builds them for `config`
        (so a run of this trainer and a native run of `config` start from the same weights and
        see the same examples), with TRL's checkpoints in `output_dir`."""
        check_supported(config, completions)
        preflight(config)
        device, dtype, _ = choose_device_and_dtype(config)
        torch.manual_seed(config.seed)  # as the project's loop, before the models are built
        teacher, student, tokenizer = build_models(config, device)
        if device.type == "cuda" and dtype != torch.float32:
            teacher.to(dtype)  # the frozen teacher once in the autocast dtype, as adakd.training.trainer
        data = prepare_data(config, tokenizer)
        optimizer = build_optimizer(config, student)
        scheduler = build_scheduler(config, optimizer)
        return cls(
            model=student,
            teacher_model=teacher,
            args=distillation_args(config, output_dir, **arg_overrides),
            train_dataset=RowDataset(trl_rows(data.train, tokenizer)),
            processing_class=tokenizer,
            optimizers=(optimizer, scheduler),
            adakd=config,
            completions=completions,
            run_dir=run_dir,
            data=data,
            preset=preset,
            name=name,
        )

    @property
    def _dtype(self) -> torch.dtype:
        """The compute dtype TRL's mixed-precision arguments ask for."""
        return torch.bfloat16 if self.args.bf16 else torch.float16 if self.args.fp16 else torch.float32

    @property
    def _training(self) -> bool:
        return self.model is not None and self.model.training

    # ------------------------------------------------------------------ data
    def _get_train_sampler(self, dataset=None) -> Sampler:
        if self.completions == "student":
            return super()._get_train_sampler(dataset)
        dataset = self.train_dataset if dataset is None else dataset
        return ProjectOrder(
            len(dataset),
            self.args.seed,
            self.args.per_device_train_batch_size,
            self.accelerator.num_processes,
            self.args.gradient_accumulation_steps,
            self.args.max_steps,
        )

    def _prepare_inputs(self, generation_batch):
        """The micro-batch to train on. Dataset completions: the rows as they are, split into
        micro-batches in order (TRL's on-policy path generates and shuffles instead). At the
        step's first micro-batch with latf_pool = "step", the whole step is scored and selected."""
        accum = self.args.gradient_accumulation_steps
        micro = self._step % accum
        if self.completions == "student":
            inputs = super()._prepare_inputs(generation_batch)
        elif not self._training:
            return self._collate(generation_batch)
        else:
            bs = self.args.per_device_train_batch_size
            if micro == 0 or self._buffered_inputs is None:
                buffered: Any = [self._collate(generation_batch[m * bs : (m + 1) * bs]) for m in range(accum)]
                self._buffered_inputs = buffered
            inputs = self._buffered_inputs[micro]  # type: ignore[index]  # set just above
        if self._training and micro == 0 and self.adakd.latf_pool == "step":
            self._pool_step(self._buffered_inputs)  # type: ignore[arg-type]  # TRL's buffer, filled
        return inputs

    def _pool_step(self, micro_batches: list[dict[str, torch.Tensor]]) -> None:
        """latf_pool = step: a no-grad scoring pass over the step's micro-batches on every rank,
        LATF's top-K and IDTS's τ over all of them (micro-batch, then rank: the data order), and
        this rank's share of each; the teacher's hidden states are kept for the gradient pass."""
        c = self.adakd
        student: Any = self.accelerator.unwrap_model(self.model)
        teacher: Any = self.accelerator.unwrap_model(self.teacher_model)
        parts, self._pool_teacher = [], []
        for inputs in micro_batches:
            forward, targets, mask = self._layout(inputs)
            with torch.no_grad(), self.compute_loss_context_manager():
                student_hidden = student.get_decoder()(**forward).last_hidden_state
                teacher_hidden = self._teacher_hidden(teacher, forward)
                heads = self._heads(student, teacher)
                parts.append(
                    token_scores_from_hidden(
                        student_hidden[:, :-1],
                        teacher_hidden[:, :-1],
                        mask,
                        *heads,
                        indicator=c.indicator,
                        labels=targets,
                        topk=c.indicator_topk,
                    )
                )
            self._pool_teacher.append(teacher_hidden)
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        pool = gather_scores(parts, rank, world)
        ratio = float(self.ratio_schedule.ratio)
        shares = pooled_shares(c, pool, ratio)
        self._pool_shares = shares[rank::world]  # gather_scores' order: micro-batch, then rank

    def _collate(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        """Left-padded prompts and right-padded completions, TRL's layout: ``prompt_ids`` /
        ``prompt_mask`` ``[B, P]``, ``completion_ids`` / ``completion_mask`` ``[B, C]``."""
        pad = self._tokenizer.pad_token_id
        device = self.accelerator.device
        p_len = max(len(r["prompt_ids"]) for r in rows)
        c_len = max(len(r["completion_ids"]) for r in rows)
        prompt_ids = torch.full((len(rows), p_len), pad, dtype=torch.long)
        prompt_mask = torch.zeros((len(rows), p_len), dtype=torch.long)
        completion_ids = torch.full((len(rows), c_len), pad, dtype=torch.long)
        completion_mask = torch.zeros((len(rows), c_len), dtype=torch.long)
        for i, r in enumerate(rows):
            p, c = len(r["prompt_ids"]), len(r["completion_ids"])
            prompt_ids[i, p_len - p :] = torch.tensor(r["prompt_ids"])
            prompt_mask[i, p_len - p :] = 1
            completion_ids[i, :c] = torch.tensor(r["completion_ids"])
            completion_mask[i, :c] = 1
        batch = dict(
            prompt_ids=prompt_ids,
            prompt_mask=prompt_mask,
            completion_ids=completion_ids,
            completion_mask=completion_mask,
        )
        return {k: v.to(device) for k, v in batch.items()}

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The micro-batch's AdaKD loss; in training, divided by the accumulation steps (TRL's
        trainer does not divide: ``loss_is_scaled_for_ga``) and added to the step's sums."""
        unwrapped = self.accelerator.unwrap_model(model)
        # through the DDP/FSDP wrapper's forward, as TRL's own loss (its prepare_for_backward)
        loss, kd, ce, tau_sum, n_selected, n_valid, n_tokens = self._forward_redirection(
            model, unwrapped, self._adakd_terms, unwrapped, inputs
        )
        if self._training:  # kept on the model device: no host sync per micro-batch (MPS has no float64)
            terms = torch.stack(
                [t.detach().to(torch.float64) for t in (loss, kd, ce, tau_sum, n_selected, n_valid, n_tokens)]
            )
            if self._sums.device != loss.device and loss.device.type != "mps":
                self._sums = self._sums.to(loss.device)
            self._sums += terms.to(self._sums.device)
            loss = loss / self.current_gradient_accumulation_steps
        return (loss, None) if return_outputs else loss

    @staticmethod
    def _layout(inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """TRL's prompt/completion tensors as one sequence: the forward's arguments (positions
        from the mask, so a left-padded prompt scores as the same prompt unpadded) and the
        next-token targets and mask ``[B, T-1]`` (completion tokens only)."""
        input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        completion = inputs["completion_mask"].bool()
        if "tool_mask" in inputs:
            completion &= inputs["tool_mask"].bool()
        labels = torch.cat(
            [
                torch.full_like(inputs["prompt_ids"], IGNORE_INDEX),
                torch.where(completion, inputs["completion_ids"], IGNORE_INDEX),
            ],
            dim=1,
        )
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        targets, mask = next_token_targets(labels)
        return dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids), targets, mask

    @staticmethod
    def _teacher_hidden(teacher: Any, forward: dict[str, torch.Tensor]) -> torch.Tensor:
        teacher.eval()
        with torch.no_grad():
            return teacher.get_decoder()(**forward).last_hidden_state

    def _heads(self, student: torch.nn.Module, teacher: torch.nn.Module) -> tuple[LMHead, LMHead]:
        head_dtype = self._dtype if self._dtype != torch.float32 else None  # the autocast dtype of the products
        return LMHead.of(student, head_dtype), LMHead.of(teacher, head_dtype)

    def _adakd_terms(self, student, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(loss, kd, ce, Σ τ over selected, n selected, n valid, n tokens) of one micro-batch."""
        c = self.adakd
        forward, targets, mask = self._layout(inputs)
        student_hidden = student.get_decoder()(**forward).last_hidden_state
        teacher = self.accelerator.unwrap_model(self.teacher_model)
        pooled = None
        if self._training and c.latf_pool == "step":
            micro = self._step % self.args.gradient_accumulation_steps
            pooled, teacher_hidden = self._pool_shares[micro], self._pool_teacher[micro]
        else:
            teacher_hidden = self._teacher_hidden(teacher, forward)
        out = adakd_loss_from_hidden(
            student_hidden[:, :-1],
            teacher_hidden[:, :-1],
            mask,
            *self._heads(student, teacher),
            **loss_settings(c, float(self.ratio_schedule.ratio)),
            labels=targets,
            pooled=pooled,
        )
        tau_sum = torch.where(out.selected, out.temperature, 0.0).sum()  # no boolean indexing: no sync
        selected, valid = out.selected.sum().double(), mask.sum().double()
        return out.loss, out.kd, out.ce, tau_sum, selected, valid, forward["attention_mask"].sum().double()

    def _get_grad_norm(self, model, grad_norm=None):
        value = super()._get_grad_norm(model, grad_norm=grad_norm)
        self._grad_norm = float(value) if value is not None else None
        return value

    # ------------------------------------------------------------------ LATF state in TRL checkpoints
    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial)) / f"checkpoint-{self.state.global_step}"
            state = {"schedule": self.ratio_schedule.state_dict(), "step": self.state.global_step}
            write_json_atomic(folder / TRL_STATE_FILE, state)
            view = self.view
            if view is not None and view.main:
                view.last_checkpoint = self.state.global_step
                where = folder.relative_to(view.run.path) if folder.is_relative_to(view.run.path) else folder
                view.run.event(view.step, "checkpoint", f"saved {folder.name}", path=str(where), pruned=[])
                write_running_status(view)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / TRL_STATE_FILE
        try:
            state = json.loads(path.read_text())
            self.ratio_schedule.load_state_dict(state["schedule"])
        except FileNotFoundError:
            raise ValueError(
                f"{path} is missing: {resume_from_checkpoint} was not written by AdaKDDistillationTrainer"
            ) from None
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is damaged ({err}): resume from an earlier checkpoint") from None

    # ------------------------------------------------------------------ the run directory
    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        *args: Any,
        resume_run: bool = False,
        **kwargs: Any,
    ):
        """TRL's ``train``. With ``run_dir``: rank 0 holds the run's lock throughout (a new run's
        folder must be new; `resume_run` or a checkpoint continues the existing one), SIGINT /
        SIGTERM stop after the current step with a checkpoint (as ``adakd train``), and a
        failure is recorded in the run directory before it is raised."""
        if self.run is None:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        self._resuming = bool(resume_run or resume_from_checkpoint)
        main = self.accelerator.is_main_process
        if not main:
            lock: Any = nullcontext()
        elif holds_lock(self.run.path):  # train_with_trl / the CLI took it before the models loaded
            lock = run_lock(self.run.path)
        elif self._resuming:
            lock = run_lock(self.run.path, create=False)
        else:
            lock = new_run_lock(self.run.path)
        with lock, self.stop:
            try:
                return super().train(resume_from_checkpoint, *args, **kwargs)
            except BaseException as err:
                self._record_failure(err)
                raise

    def _record_failure(self, err: BaseException) -> None:
        if self.run is None or not self.accelerator.is_main_process:
            return
        view = self.view
        if view is not None:
            step, last = view.step, view.last_checkpoint
        elif self._resuming:  # failed before training (a damaged checkpoint): the run as it was
            status = self.run.read_status() or {}
            saved = status.get("step")
            step, last = (saved if isinstance(saved, int) else 0), status.get("last_checkpoint")
        else:  # a new run that failed before its directory was written: nothing to record
            return
        record_failure(self.run, err, step=step, total_steps=self.adakd.max_steps, last_checkpoint=last)

    def _begin_run(self, step: int) -> None:
        """At TRL's ``on_train_begin``: a new run directory, or the resumed one cut at `step`."""
        if self.run is None:
            return
        assert self.data is not None
        device, dtype = self.accelerator.device, self._dtype
        teacher = self.accelerator.unwrap_model(self.teacher_model)
        view = RunView(
            config=self.adakd,
            run=self.run,
            main=self.accelerator.is_main_process,
            device=device,
            dtype=dtype,
            teacher=teacher,
            student=self.accelerator.unwrap_model(self.model),
            tokenizer=self._tokenizer,
            data=self.data,
            step=step,
            ratio=float(self.ratio_schedule.ratio),
            rank=self.accelerator.process_index,
            world=self.accelerator.num_processes,
        )
        import trl

        world = self.accelerator.num_processes
        how = f"TRL {trl.__version__} DistillationTrainer, {world} process{'es' if world > 1 else ''}"
        if view.main and not self._resuming:
            trl_folder = self.run.path / CHECKPOINTS  # TRL makes its output folder at start: still empty
            if trl_folder.is_dir() and not any(trl_folder.iterdir()):
                trl_folder.rmdir()
            self.run.create()
        self.view = view  # from here on a failure is recorded in the run directory
        if view.main and not self._resuming:
            self.run.set_status("running", step=0, total_steps=self.adakd.max_steps)
            meta = run_metadata(
                self.adakd,
                name=self.name or self.run.name,
                preset=self.preset,
                command=sys.argv,
                device=device,
                dtype=dtype,
                reason=how,
                teacher=teacher,
                student=view.student,
            )
            meta.update(trainer="trl", trl_output_dir=str(self.args.output_dir), completions=self.completions)
            self.run.write_json(CONFIG, meta)
            self.run.event(0, "start", f"training {self.run.name}: {self.adakd.max_steps} steps with {how}")
        elif view.main:
            status = self.run.read_status() or {}
            previous = {"previous_state": self.run.effective_state(), "previous_step": status.get("step")}
            view.last_checkpoint = step if step > 0 else None
            problems = cut_records_at(view, self.probes, self.evaluation)
            write_running_status(view)
            where = f"TRL checkpoint-{step}" if step else "the start (no checkpoint was written)"
            self.run.event(step, "resume", f"resumed from {where}", **previous)
            for problem in problems:
                log.warning("%s: %s", self.run.path, problem)
                self.run.event(step, "warning", problem)
        call_all(self.run_callbacks, "on_begin", view)

    def _end_step(self, step: int) -> bool:
        """At TRL's ``on_step_end`` (after the optimiser step): all-reduce the step's sums, move r
        once (the same on every rank), and hand the metrics record to the run callbacks. True
        when a stop was requested on any rank: the run checkpoints and stops after this step."""
        c = self.adakd
        ratio = float(self.ratio_schedule.ratio)
        world = self.accelerator.num_processes
        flags = torch.tensor([ratio, float(self.stop.requested)], dtype=torch.float64, device=self._sums.device)
        sums = torch.cat([self._sums, flags])  # summed over ranks: r must agree, any rank may stop
        self._sums.zero_()
        if world > 1:
            sums = self.accelerator.reduce(sums.to(self.accelerator.device), reduction="sum")
        sums = sums.cpu()  # the step's one host sync for its bookkeeping
        if world > 1:
            if abs(sums[7].item() - ratio * world) > 1e-9 * world:
                raise RuntimeError(f"ranks disagree on the LATF ratio at step {step}")
        n_micro = self.args.gradient_accumulation_steps * world
        loss, kd = sums[0].item() / n_micro, sums[1].item() / n_micro
        finite = math.isfinite(loss) and (self._grad_norm is None or math.isfinite(self._grad_norm))
        if finite:
            self.ratio_schedule.update(kd)
        next_ratio = float(self.ratio_schedule.ratio)
        seconds = time.perf_counter() - self._step_started
        stop = sums[8].item() > 0
        if self.view is None:
            return stop
        view = self.view
        view.step, view.ratio = step, next_ratio
        if view.main and not finite:
            view.run.event(step, "warning", f"non-finite loss or gradient norm at step {step} (TRL applied the update)")
        if view.main and next_ratio != ratio and c.latf == "adaptive":
            view.run.event(step, "ratio_change", f"r {ratio:.4f} -> {next_ratio:.4f}", old=ratio, new=next_ratio)
        record = step_record(
            step,
            sums,
            n_micro,
            ratio=ratio,
            schedule=self.ratio_schedule,
            lr=self._step_lr,
            grad_norm=self._grad_norm,
            seconds=seconds,
        )
        record.update(skipped=not finite, stop=stop)
        call_all(self.run_callbacks, "on_step_end", view, record)
        return stop

    def _end_run(self, step: int) -> None:
        if self.view is not None:
            self.view.step = step
            call_all(self.run_callbacks, "on_end", self.view, "finished" if step >= self.adakd.max_steps else "stopped")


def train_with_trl(
    config: RunConfig,
    run_dir: str | os.PathLike,
    *,
    name: str | None = None,
    preset: str | None = None,
    on_step: Callable[[dict], None] | None = None,
) -> Path:
    """``adakd train`` with ``trainer = "trl"``: a new run in `run_dir`, trained by
    ``AdaKDDistillationTrainer`` with TRL's checkpoints in its ``checkpoints/`` folder. Under
    ``accelerate launch`` (or torchrun) every process calls this; rank 0 writes."""
    first_rank = int(os.environ.get("RANK", "0")) == 0  # only rank 0 will write the directory
    with _own_process_group(), new_run_lock(run_dir) if first_rank else nullcontext():  # before any model loads
        _train(
            lambda: AdaKDDistillationTrainer.from_config(
                config, Path(run_dir) / CHECKPOINTS, run_dir=run_dir, preset=preset, name=name
            ),
            on_step,
        )
    return Path(run_dir)


def _train(build: Callable[[], AdaKDDistillationTrainer], on_step: Callable[[dict], None] | None, **train_args) -> None:
    """Build the trainer and train; it is unreachable once this returns, so that
    :func:`_own_process_group` can free it (and the process group its DDP wrapper holds)."""
    trainer = build()
    _report_as_the_cli(trainer, on_step)
    trainer.train(**train_args)


@contextmanager
def _own_process_group():
    """Under ``accelerate launch`` the trainer's Accelerator creates the process group: destroy it
    when the run ends, all ranks together, as ``adakd train`` does for its own. One the caller
    made is left to the caller.

    The finished trainer is collected first. Its reference cycles (callbacks that point back at
    it) keep the DDP wrapper, and through it the gloo process group and its threads, alive past
    ``destroy_process_group`` until the interpreter's own teardown, whose order is arbitrary: a
    rank then aborted now and then at exit ("terminate called without an active exception", no
    Python frame) although the run had finished."""
    import gc

    import torch.distributed as dist

    made_here = not (dist.is_available() and dist.is_initialized())
    yield  # a failure propagates as it is: a barrier here could wait for a rank that is gone
    if made_here and dist.is_available() and dist.is_initialized():
        gc.collect()  # the trainer of the block (see _train) and the process-group references it held
        dist.barrier()  # no rank tears its connections down while another still uses them
        dist.destroy_process_group()


def _report_as_the_cli(trainer: AdaKDDistillationTrainer, on_step: Callable[[dict], None] | None) -> None:
    """`adakd train` / `resume` report through `on_step` (the CLI's progress bar) and the run
    directory: TRL's own progress bar and printed log dictionaries would repeat them."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    if on_step is not None:
        trainer.run_callbacks.append(StepHook(on_step))


def last_trl_checkpoint(run_dir: str | os.PathLike) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete TRL checkpoint in the run's ``checkpoints/``, or
    None (``adakd.training.checkpoint.list_trl_checkpoints``: ``adakd_state.json`` is written
    after TRL's own files, so a half-written checkpoint is passed over)."""
    found = list_trl_checkpoints(Path(run_dir) / CHECKPOINTS)
    return found[-1] if found else None


def resume_with_trl(
    config: RunConfig, run_dir: str | os.PathLike, *, on_step: Callable[[dict], None] | None = None
) -> Path:
    """``adakd resume`` of a ``trainer = "trl"`` run: TRL's ``resume_from_checkpoint`` from the
    newest checkpoint (weights, optimiser, schedule, RNG, data position; the LATF state from
    ``adakd_state.json``), or from step 0 when none was written; the run's files are cut there."""
    meta = RunDir(run_dir).read_config() or {}
    with _own_process_group():  # before the trainer's Accelerator makes it
        found = last_trl_checkpoint(run_dir)
        _train(
            lambda: AdaKDDistillationTrainer.from_config(
                config, Path(run_dir) / CHECKPOINTS, run_dir=run_dir, preset=meta.get("preset"), name=meta.get("name")
            ),
            on_step,
            resume_from_checkpoint=str(found[1]) if found else None,
            resume_run=True,
        )
    return Path(run_dir)


class _AdaKDSteps(TrainerCallback):
    """TRL's callback events, forwarded to the trainer's AdaKD step and run-directory logic."""

    def __init__(self, trainer: AdaKDDistillationTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        self.trainer._begin_run(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self.trainer._step_started = time.perf_counter()
        optimizer = self.trainer.optimizer
        self.trainer._step_lr = optimizer.param_groups[0]["lr"] if optimizer is not None else float("nan")

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer._end_step(state.global_step):
            control.should_save = True  # a stopped run can be resumed from this step
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        self.trainer._end_run(state.global_step)
