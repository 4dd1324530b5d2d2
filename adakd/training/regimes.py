"""Student-generated data: the GKD and DistiLLM data regimes (issue 10).

A *regime* decides, once per micro-batch, which responses the distillation loss is computed
on. It is orthogonal to the loss and to AdaKD: the trainer calls

    batch, info = regime.prepare_batch(batch, step, student, tokenizer)

before the teacher/student forwards, and AdaKD (difficulty, LATF, IDTS) scores whatever batch
comes back. Three kinds (``RunConfig.regime``):

- ``ground_truth``: the dataset's responses; the batch is returned unchanged, ``info = {}``.
- ``gkd`` (Agarwal et al., ICLR 2024, "On-Policy Distillation of Language Models: Learning
  from Self-Generated Mistakes"): with probability λ_on (``gkd_lambda``) the responses of the
  batch are replaced by the student's own samples for the same prompts; otherwise the
  ground-truth batch is used. The coin comes from a dedicated generator seeded by
  (seed, step, micro-batch), never from the global RNG.
- ``distillm`` (Ko et al., ICML 2024, "DistiLLM: Towards Streamlined Distillation for Large
  Language Models", §3.2 adaptive off-policy; release jongwooko/distillm, ``finetune.py`` and
  ``distillm/buffer.py``): an adaptive probability φ of using student data, a FIFO replay
  buffer of student samples, fresh generation with a probability that decays over training
  and buffer reuse in between (exact rule in :class:`DistiLLMRegime`).

Generated batches follow exactly the conventions of ``adakd.data.tokenize.encode_example`` /
``collate``: unshifted HF-style labels (``labels[t] == input_ids[t]`` on response tokens, the
end token included; -100 on the prompt and on padding), right padding; the trainer shifts with
``next_token_targets``. Note: the public AdaKD/DistiLLM sampler writes generated labels
unshifted against already-shifted logits, so every generated token is scored one position
off; here generated and ground-truth batches go through the same shift.

Reproducibility: every random draw of a regime comes from a seed derived from
(run seed, step, micro-batch[, rank]) with :func:`derive_seed`; sampling runs inside a forked
RNG (the global CPU and CUDA RNG states are saved and restored), so the training RNG stream is
untouched and a resumed run draws the same coins and the same samples. The replay buffer and
φ are in :meth:`Regime.state_dict` (JSON: lists of ints), saved in trainer_state.json.

Modules: seeded draws, generation and generated batches are :mod:`adakd.training.student_samples`;
DistiLLM's replay buffer and φ are :mod:`adakd.training.replay`; this module holds the regimes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from adakd.training.replay import AdaptiveStudentDataProb, ReplayBuffer
from adakd.training.student_samples import (
    build_generated_batch,
    derive_seed,
    end_token_ids,
    on_device_of,
    prompts_from_batch,
    sample_student_responses,
    seeded_generator,
    uniform_draw,
)

log = logging.getLogger(__name__)

KINDS = ("ground_truth", "gkd", "distillm")


# --------------------------------------------------------------------------- regimes
class Regime:
    """Ground truth: the batch unchanged. Base class of the student-data regimes.

    ``prepare_batch(batch, step, student, tokenizer, micro=0) -> (batch, info)``:
    ``step`` is the 1-based optimiser step the batch is for (the ``step`` of its metrics
    line), ``micro`` the micro-batch index within it (gradient accumulation). ``info`` holds
    the metrics.jsonl regime fields (empty for ground truth).
    """

    kind = "ground_truth"

    def prepare_batch(
        self,
        batch: dict[str, torch.Tensor],
        step: int,
        student: torch.nn.Module | None = None,
        tokenizer=None,
        *,
        micro: int = 0,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return batch, {}

    def prepare(
        self,
        batch: dict[str, torch.Tensor],
        *,
        step: int,
        student: torch.nn.Module,
        tokenizer=None,
        teacher: torch.nn.Module | None = None,
        micro: int = 0,
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Keyword form of :meth:`prepare_batch` (``teacher`` is accepted and unused)."""
        return self.prepare_batch(batch, step, student, tokenizer, micro=micro)

    def on_validation_loss(self, loss: float) -> None:
        """Feed a validation loss (only DistiLLM uses it)."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(
                f"the checkpoint holds the state of regime {state.get('kind')!r}, but this run's "
                f"regime is {self.kind!r}; resume with the run's own config.json"
            )


class _Sampler:
    """What the student-data regimes share: generation settings and seeds."""

    def __init__(
        self,
        *,
        seed: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        max_length: int,
        pad_id: int,
        eos_ids: Sequence[int] | None,
        rank: int,
    ) -> None:
        self.seed, self.rank = int(seed), int(rank)
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), float(top_p)
        self.max_length, self.pad_id = int(max_length), int(pad_id)
        self.eos_ids = list(eos_ids) if eos_ids else None

    def coin(self, kind: str, step: int, micro: int) -> torch.Generator:
        """The step's decision stream; the same on every rank so all ranks take the same branch."""
        return seeded_generator(self.seed, kind, "coin", step, micro)

    def generate(
        self, kind: str, student, tokenizer, prompts: list[list[int]], step: int, micro: int
    ) -> list[list[int]]:
        # no token beyond max_length can be trained on: do not sample it
        room = self.max_length - min(len(p) for p in prompts)
        return sample_student_responses(
            student,
            tokenizer,
            prompts,
            max_new_tokens=max(1, min(self.max_new_tokens, room)),
            temperature=self.temperature,
            top_p=self.top_p,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            generator_seed=derive_seed(self.seed, kind, "sample", step, micro, self.rank),
        )


def _mean_length(responses: Sequence[Sequence[int]]) -> float:
    return sum(len(r) for r in responses) / len(responses)


class GKDRegime(Regime):
    """GKD's on-policy mixing: at each micro-batch, u ~ U[0, 1) from the step's own generator;
    if u < λ_on the responses are replaced by student samples for the same prompts (the
    prompts of :func:`prompts_from_batch`), else the ground-truth batch is used unchanged.
    λ_on = 0 never samples (the batch object is returned as is), λ_on = 1 always does.

    info: ``on_policy`` (bool), ``data_source`` ("student" | "ground_truth"), ``buffer_size``
    (0: GKD keeps no buffer), ``student_data_prob`` (λ_on), ``gen_length`` (mean response
    length in tokens of this batch's samples, end token included; None on ground truth).
    """

    kind = "gkd"

    def __init__(self, lam: float, sampler: _Sampler) -> None:
        if not 0 <= lam <= 1:
            raise ValueError(f"gkd_lambda must be in [0, 1] (got {lam})")
        self.lam, self.sampler = float(lam), sampler

    def prepare_batch(self, batch, step, student=None, tokenizer=None, *, micro=0):
        u = uniform_draw(self.sampler.coin(self.kind, step, micro))
        info = {
            "on_policy": False,
            "data_source": "ground_truth",
            "buffer_size": 0,
            "student_data_prob": self.lam,
            "gen_length": None,
        }
        if not u < self.lam:
            return batch, info
        prompts = prompts_from_batch(batch)
        responses = self.sampler.generate(self.kind, student, tokenizer, prompts, step, micro)
        new = build_generated_batch(prompts, responses, self.sampler.pad_id, self.sampler.max_length)
        info.update(on_policy=True, data_source="student", gen_length=_mean_length(responses))
        return on_device_of(new, batch), info


class DistiLLMRegime(Regime):
    """DistiLLM's adaptive off-policy regime (release ``finetune.py``, ``"adaptive"`` types).

    Per micro-batch of B rows at 1-based step t of T, with φ from
    :class:`AdaptiveStudentDataProb` and u ~ U[0, 1) from the step's own generator:

        if u < φ·(1 − t/T)  or  (u < φ and the buffer is not full):
            fresh: sample responses for the batch's prompts, push all B to the buffer,
                   train on them                                 (on_policy = True)
        elif u < φ:
            replay: train on B samples drawn uniformly without replacement from the buffer
                    (prompts and responses of earlier steps)     (on_policy = False)
        else:
            ground truth: the batch unchanged

    So student data is used with probability φ; of it, a fraction (1 − t/T) is fresh early
    on, and the buffer serves the rest once it is full ("reuses buffered samples between
    generations"). A buffer holding fewer than B samples (capacity < B) is never sampled:
    the step generates instead. φ only moves in :meth:`on_validation_loss`.

    info: ``on_policy``, ``data_source`` ("student" | "buffer" | "ground_truth"),
    ``buffer_size`` (after this batch), ``student_data_prob`` (φ), ``gen_length`` (mean
    response length of the student samples trained on; None on ground truth).
    """

    kind = "distillm"

    def __init__(
        self, sampler: _Sampler, *, capacity: int, total_steps: int, prob_step: float = 0.1, threshold: float = 0.1
    ) -> None:
        self.sampler = sampler
        self.total_steps = int(total_steps)
        self.buffer = ReplayBuffer(capacity)
        self.scheduler = AdaptiveStudentDataProb(prob_step=prob_step, threshold=threshold)

    def prepare_batch(self, batch, step, student=None, tokenizer=None, *, micro=0):
        phi = self.scheduler.prob
        u = uniform_draw(self.sampler.coin(self.kind, step, micro))
        rows = int(batch["input_ids"].shape[0])
        info = {
            "on_policy": False,
            "data_source": "ground_truth",
            "buffer_size": len(self.buffer),
            "student_data_prob": phi,
            "gen_length": None,
        }
        fresh_p = self.scheduler.generation_prob(step, self.total_steps)
        can_replay = self.buffer.full and len(self.buffer) >= rows
        if u < fresh_p or (u < phi and not can_replay):
            prompts = prompts_from_batch(batch)
            responses = self.sampler.generate(self.kind, student, tokenizer, prompts, step, micro)
            self.buffer.extend(prompts, responses)
            info.update(on_policy=True, data_source="student")
        elif u < phi:
            picked = self.buffer.sample(
                rows, seeded_generator(self.sampler.seed, self.kind, "replay", step, micro, self.sampler.rank)
            )
            prompts, responses = [p for p, _ in picked], [r for _, r in picked]
            info.update(data_source="buffer")
        else:
            return batch, info
        new = build_generated_batch(prompts, responses, self.sampler.pad_id, self.sampler.max_length)
        info.update(buffer_size=len(self.buffer), gen_length=_mean_length(responses))
        return on_device_of(new, batch), info

    def on_validation_loss(self, loss: float) -> None:
        old = self.scheduler.prob
        new = self.scheduler.update(loss)
        if new != old:
            log.info(
                "DistiLLM: validation loss %.4f >= reference + %.3g: student-data probability %.2f -> %.2f",
                float(loss),
                self.scheduler.threshold,
                old,
                new,
            )

    @property
    def student_data_prob(self) -> float:
        return self.scheduler.prob

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "buffer": self.buffer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.buffer.load_state_dict(state["buffer"])
        self.scheduler.load_state_dict(state["scheduler"])


def merge_infos(infos: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One metrics line's regime fields from the ``info`` of each micro-batch of the step.

    ``on_policy``: any micro-batch was freshly sampled; ``data_source``: the common source, or
    "mixed" when the micro-batches differ; ``buffer_size`` and ``student_data_prob``: the last
    (the buffer after the step; φ does not change within a step); ``gen_length``: the mean over
    the micro-batches trained on student samples (equal-sized), None when there were none.
    Ground truth (all infos empty) gives {}.
    """
    infos = [i for i in infos if i]
    if not infos:
        return {}
    sources = {i["data_source"] for i in infos}
    lengths = [i["gen_length"] for i in infos if i.get("gen_length") is not None]
    return {
        "on_policy": any(i["on_policy"] for i in infos),
        "data_source": sources.pop() if len(sources) == 1 else "mixed",
        "buffer_size": infos[-1]["buffer_size"],
        "student_data_prob": infos[-1]["student_data_prob"],
        "gen_length": sum(lengths) / len(lengths) if lengths else None,
    }


def make_regime(
    config,
    pad_id: int | None = None,
    eos_ids: Sequence[int] | None = None,
    *,
    tokenizer=None,
    rank: int = 0,
    device: Any = None,
) -> Regime:
    """The regime ``config.regime`` names, set up from a RunConfig.

    ``pad_id``: the id batches are padded with (default: the tokenizer's pad, else its first
    end token); ``eos_ids``: ids that end a sample (default :func:`end_token_ids` of
    ``tokenizer``); ``rank``: the data-parallel rank (its samples get their own seed; the
    coins are shared by all ranks). ``device`` is accepted for symmetry and unused (the
    regime follows the batch's and the student's devices).
    """
    kind = config.regime
    if kind == "ground_truth":
        return Regime()
    if kind not in KINDS:
        raise ValueError(f"unknown regime {kind!r}; choose one of {', '.join(KINDS)}")
    if eos_ids is None:
        if tokenizer is None:
            raise ValueError(f"regime {kind!r} needs eos_ids or a tokenizer to know where samples end")
        eos_ids = end_token_ids(tokenizer)
    if pad_id is None:
        pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        pad_id = pad_id if pad_id is not None else list(eos_ids)[0]
    sampler = _Sampler(
        seed=config.seed,
        max_new_tokens=config.gen_max_new_tokens,
        temperature=config.gen_temperature,
        top_p=config.gen_top_p,
        max_length=config.max_length,
        pad_id=pad_id,
        eos_ids=eos_ids,
        rank=rank,
    )
    if kind == "gkd":
        return GKDRegime(config.gkd_lambda, sampler)
    return DistiLLMRegime(
        sampler,
        capacity=config.buffer_capacity,
        total_steps=config.max_steps,
        prob_step=config.distillm_prob_step,
        threshold=config.distillm_threshold,
    )
