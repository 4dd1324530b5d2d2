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

Generated batches follow exactly the conventions of ``adakd.tokenize.encode_example`` /
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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
END_TOKENS = ("<|im_end|>", "<|endoftext|>")  # ChatML end of turn; GPT-2 style end of text
KINDS = ("ground_truth", "gkd", "distillm")


# --------------------------------------------------------------------------- seeds and RNG
def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (e.g. ``(run_seed, step, micro, "gkd/coin")``).

    SHA-256 of the parts' ``str`` joined by '/': stable across processes and Python versions
    (unlike ``hash``), and distinct streams for distinct purposes, so the coin and the sampler
    of one step never share a seed.
    """
    text = "/".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)


def seeded_generator(*parts: Any) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator().manual_seed(derive_seed(*parts))


def _uniform(generator: torch.Generator) -> float:
    """One draw u ~ U[0, 1) from ``generator``."""
    return float(torch.rand((), generator=generator, dtype=torch.float64))


@contextlib.contextmanager
def _sampling_context(model: torch.nn.Module, seed: int) -> Iterator[None]:
    """Eval mode, no grad and a private RNG stream for the block.

    Saves the CPU RNG and the RNG of the model's own accelerator, seeds both with ``seed``
    (``generate`` draws its samples from the global generators), and restores on exit the RNG
    states and the ``training`` flag of every submodule (so a partially frozen model comes
    back exactly as it was).
    """
    device = next(model.parameters()).device
    flags = [(m, m.training) for m in model.modules()]
    if device.type == "cpu":
        fork = torch.random.fork_rng(devices=[])
    else:
        fork = torch.random.fork_rng(devices=[device.index or 0], device_type=device.type)
    try:
        with fork, torch.no_grad():
            torch.random.default_generator.manual_seed(seed)
            if device.type == "cuda":
                torch.cuda.default_generators[device.index or 0].manual_seed(seed)
            elif device.type == "mps":
                torch.mps.manual_seed(seed)
            model.eval()
            yield
    finally:
        for module, flag in flags:
            module.training = flag


# --------------------------------------------------------------------------- generation
def end_token_ids(tokenizer) -> list[int]:
    """Ids that end a response: the tokenizer's eos plus <|im_end|> / <|endoftext|> if known."""
    ids = [tokenizer.eos_token_id] if getattr(tokenizer, "eos_token_id", None) is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in END_TOKENS if t in vocab]
    if not ids:
        raise ValueError("the tokenizer has no eos / <|im_end|> token: sampling would never stop early; "
                         "pass eos_ids explicitly")
    return list(dict.fromkeys(int(i) for i in ids))


def cut_at_end(tokens: Sequence[int], end_ids: Sequence[int]) -> list[int]:
    """``tokens`` up to and including the first end token (all of them if none occurs).

    The end token is kept, as ``encode_example`` keeps it on ground-truth responses, so the
    student is also trained to stop; what ``generate`` pads after it is dropped.
    """
    ends = set(int(e) for e in end_ids)
    for i, t in enumerate(tokens):
        if int(t) in ends:
            return [int(x) for x in tokens[: i + 1]]
    return [int(x) for x in tokens]


def sample_student_responses(student: torch.nn.Module, tokenizer, prompt_ids: Sequence[Sequence[int]], *,
                             max_new_tokens: int, temperature: float = 1.0, top_p: float = 1.0,
                             generator_seed: int, eos_ids: Sequence[int] | None = None,
                             pad_id: int | None = None) -> list[list[int]]:
    """Sample one response per prompt from ``student``: y ~ q_θ(· | x), token by token.

    prompt_ids: B lists of token ids (each non-empty). Returns B lists of response ids, each
    cut after its first end token (kept; see :func:`cut_at_end`) and at most
    ``max_new_tokens`` long (a response that hits the bound has no end token).

    One batched ``generate`` call: prompts left-padded with ``pad_id`` (so every row
    continues from its own last prompt token), KV cache on, pure ancestral sampling from
    softmax(z / temperature) restricted to the top-p nucleus — no top-k (a model's
    generation_config default of top_k = 50 is switched off), no repetition penalty. The
    sampling temperature is separate from the distillation temperature.

    The student runs in eval mode (no dropout) and comes back in the mode it was in. The
    draws come from the global generators re-seeded with ``generator_seed`` inside a forked
    RNG, so the same seed and weights give the same samples and the caller's RNG stream is
    exactly as before the call. ``eos_ids`` default to :func:`end_token_ids`; ``pad_id`` to
    the tokenizer's pad id, else the first end id. A DDP wrapper is unwrapped (``.module``).
    """
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 (got {max_new_tokens})")
    if not temperature > 0 or not 0 < top_p <= 1:
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    prompts = [[int(t) for t in p] for p in prompt_ids]
    if not prompts:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token to condition on")
    stop = list(eos_ids) if eos_ids else end_token_ids(tokenizer)
    if pad_id is None:
        pad_id = getattr(tokenizer, "pad_token_id", None)
    pad = int(pad_id) if pad_id is not None else stop[0]
    model = getattr(student, "module", student)  # DistributedDataParallel has no generate()
    device = next(model.parameters()).device

    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature,
                              top_p=top_p, top_k=0, num_beams=1, repetition_penalty=1.0,
                              no_repeat_ngram_size=0, eos_token_id=stop, pad_token_id=pad, use_cache=True)
    # generate() fills every knob left unset from model.generation_config (min_p, typical_p,
    # suppress_tokens, ...): a blank one for the call keeps the protocol exactly `config`.
    saved_defaults, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with _sampling_context(model, generator_seed):
            out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
    finally:
        model.generation_config = saved_defaults
    return [cut_at_end(row, stop) for row in out[:, width:].tolist()]


# --------------------------------------------------------------------------- batches
def prompts_from_batch(batch: Mapping[str, torch.Tensor]) -> list[list[int]]:
    """The prompt of every row of a training batch: the valid tokens before its first label.

    A row's prompt is ``input_ids[t]`` for the positions t < first index with
    ``labels[t] != -100`` where ``attention_mask[t] == 1`` (works for right or left padding).
    A row whose response was truncated away (no label at all) keeps all its valid tokens
    as the prompt. A row whose labels start at position 0 has no prompt: ValueError.
    """
    ids = batch["input_ids"].tolist()
    labels = batch["labels"].tolist()
    mask = batch["attention_mask"].tolist() if "attention_mask" in batch else [[1] * len(r) for r in ids]
    prompts = []
    for row, (tokens, lab, valid) in enumerate(zip(ids, labels, mask)):
        first = next((t for t, y in enumerate(lab) if y != IGNORE_INDEX), len(lab))
        prompt = [tok for tok, v in zip(tokens[:first], valid[:first]) if v]
        if not prompt:
            raise ValueError(f"batch row {row} has no prompt tokens before its first label: "
                             "student responses need a prompt to condition on")
        prompts.append(prompt)
    return prompts


def build_generated_batch(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                          pad_id: int, max_length: int) -> dict[str, torch.Tensor]:
    """A training batch from prompts and (generated) responses, as ``collate`` builds one.

    Row b: ``input_ids = prompt_b + response_b`` truncated to ``max_length`` (the response's
    tail is cut, as ``encode_example`` cuts a long ground-truth response); ``labels`` =
    -100 on the prompt, ``labels[t] = input_ids[t]`` on every response token (the end token
    included when the response has one), then right padding with ``pad_id`` and -100 labels
    and ``attention_mask`` 0. Returns CPU LongTensors ``input_ids``, ``attention_mask``,
    ``labels`` of shape [B, T], T = longest row.

    Labels are UNSHIFTED (HF style); the trainer scores ``logits[:, :-1]`` against
    ``next_token_targets(labels)``. Note: the public release's sampler writes generated labels
    unshifted against shifted logits (an off-by-one on every generated token); here a
    generated batch is indistinguishable in layout from a ground-truth one.
    """
    from adakd.tokenize import collate

    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    if not prompt_ids:
        raise ValueError("build_generated_batch needs at least one row")
    encoded = []
    for prompt, response in zip(prompt_ids, response_ids):
        prompt = [int(t) for t in prompt]
        if not prompt or len(prompt) > max_length:
            raise ValueError(f"prompt length {len(prompt)} must be in [1, max_length={max_length}]")
        response = [int(t) for t in response][: max_length - len(prompt)]
        encoded.append({"input_ids": prompt + response,
                        "labels": [IGNORE_INDEX] * len(prompt) + response,
                        "prompt_length": len(prompt)})
    return collate(encoded, pad_id)


def _on_device(batch: dict[str, torch.Tensor], like: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    device = like["input_ids"].device
    return {k: v.to(device) for k, v in batch.items()}


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
            log.warning("replay buffer capacity changed from %s to %s on load; keeping the newest items",
                        state["capacity"], self.capacity)
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

    def __init__(self, prob_step: float = 0.1, threshold: float = 0.1, initial: float = 0.0,
                 max_prob: float = 1.0) -> None:
        if not 0 <= prob_step <= 1 or threshold < 0 or not 0 <= initial <= max_prob <= 1:
            raise ValueError(f"need 0 <= prob_step <= 1, threshold >= 0, 0 <= initial <= max_prob <= 1 "
                             f"(got {prob_step}, {threshold}, {initial}, {max_prob})")
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
        return {"prob": self.prob, "reference": self.reference, "n_updates": self.n_updates,
                "prob_step": self.prob_step, "threshold": self.threshold, "max_prob": self.max_prob}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.prob = float(state["prob"])
        self.reference = None if state["reference"] is None else float(state["reference"])
        self.n_updates = int(state.get("n_updates", 0))


# --------------------------------------------------------------------------- regimes
class Regime:
    """Ground truth: the batch unchanged. Base class of the student-data regimes.

    ``prepare_batch(batch, step, student, tokenizer, micro=0) -> (batch, info)``:
    ``step`` is the 1-based optimiser step the batch is for (the ``step`` of its metrics
    line), ``micro`` the micro-batch index within it (gradient accumulation). ``info`` holds
    the metrics.jsonl regime fields (empty for ground truth).
    """

    kind = "ground_truth"

    def prepare_batch(self, batch: dict[str, torch.Tensor], step: int, student: torch.nn.Module | None = None,
                      tokenizer=None, *, micro: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        return batch, {}

    def prepare(self, batch: dict[str, torch.Tensor], *, step: int, student: torch.nn.Module,
                tokenizer=None, teacher: torch.nn.Module | None = None,
                micro: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Keyword form of :meth:`prepare_batch` (``teacher`` is accepted and unused)."""
        return self.prepare_batch(batch, step, student, tokenizer, micro=micro)

    def on_validation_loss(self, loss: float) -> None:
        """Feed a validation loss (only DistiLLM uses it)."""

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self.kind:
            raise ValueError(f"the checkpoint holds the state of regime {state.get('kind')!r}, but this run's "
                             f"regime is {self.kind!r}; resume with the run's own config.json")


class _Sampler:
    """What the student-data regimes share: generation settings and seeds."""

    def __init__(self, *, seed: int, max_new_tokens: int, temperature: float, top_p: float, max_length: int,
                 pad_id: int, eos_ids: Sequence[int] | None, rank: int) -> None:
        self.seed, self.rank = int(seed), int(rank)
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), float(top_p)
        self.max_length, self.pad_id = int(max_length), int(pad_id)
        self.eos_ids = list(eos_ids) if eos_ids else None

    def coin(self, kind: str, step: int, micro: int) -> torch.Generator:
        """The step's decision stream; the same on every rank so all ranks take the same branch."""
        return seeded_generator(self.seed, kind, "coin", step, micro)

    def generate(self, kind: str, student, tokenizer, prompts: list[list[int]], step: int,
                 micro: int) -> list[list[int]]:
        # no token beyond max_length can be trained on: do not sample it
        room = self.max_length - min(len(p) for p in prompts)
        return sample_student_responses(
            student, tokenizer, prompts, max_new_tokens=max(1, min(self.max_new_tokens, room)),
            temperature=self.temperature, top_p=self.top_p, eos_ids=self.eos_ids, pad_id=self.pad_id,
            generator_seed=derive_seed(self.seed, kind, "sample", step, micro, self.rank))


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
        u = _uniform(self.sampler.coin(self.kind, step, micro))
        info = {"on_policy": False, "data_source": "ground_truth", "buffer_size": 0,
                "student_data_prob": self.lam, "gen_length": None}
        if not u < self.lam:
            return batch, info
        prompts = prompts_from_batch(batch)
        responses = self.sampler.generate(self.kind, student, tokenizer, prompts, step, micro)
        new = build_generated_batch(prompts, responses, self.sampler.pad_id, self.sampler.max_length)
        info.update(on_policy=True, data_source="student", gen_length=_mean_length(responses))
        return _on_device(new, batch), info


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

    def __init__(self, sampler: _Sampler, *, capacity: int, total_steps: int, prob_step: float = 0.1,
                 threshold: float = 0.1) -> None:
        self.sampler = sampler
        self.total_steps = int(total_steps)
        self.buffer = ReplayBuffer(capacity)
        self.scheduler = AdaptiveStudentDataProb(prob_step=prob_step, threshold=threshold)

    def prepare_batch(self, batch, step, student=None, tokenizer=None, *, micro=0):
        phi = self.scheduler.prob
        u = _uniform(self.sampler.coin(self.kind, step, micro))
        rows = int(batch["input_ids"].shape[0])
        info = {"on_policy": False, "data_source": "ground_truth", "buffer_size": len(self.buffer),
                "student_data_prob": phi, "gen_length": None}
        fresh_p = self.scheduler.generation_prob(step, self.total_steps)
        can_replay = self.buffer.full and len(self.buffer) >= rows
        if u < fresh_p or (u < phi and not can_replay):
            prompts = prompts_from_batch(batch)
            responses = self.sampler.generate(self.kind, student, tokenizer, prompts, step, micro)
            self.buffer.extend(prompts, responses)
            info.update(on_policy=True, data_source="student")
        elif u < phi:
            picked = self.buffer.sample(rows, seeded_generator(self.sampler.seed, self.kind, "replay", step,
                                                               micro, self.sampler.rank))
            prompts, responses = [p for p, _ in picked], [r for _, r in picked]
            info.update(data_source="buffer")
        else:
            return batch, info
        new = build_generated_batch(prompts, responses, self.sampler.pad_id, self.sampler.max_length)
        info.update(buffer_size=len(self.buffer), gen_length=_mean_length(responses))
        return _on_device(new, batch), info

    def on_validation_loss(self, loss: float) -> None:
        old = self.scheduler.prob
        new = self.scheduler.update(loss)
        if new != old:
            log.info("DistiLLM: validation loss %.4f >= reference + %.3g: student-data probability %.2f -> %.2f",
                     float(loss), self.scheduler.threshold, old, new)

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
    return {"on_policy": any(i["on_policy"] for i in infos),
            "data_source": sources.pop() if len(sources) == 1 else "mixed",
            "buffer_size": infos[-1]["buffer_size"], "student_data_prob": infos[-1]["student_data_prob"],
            "gen_length": sum(lengths) / len(lengths) if lengths else None}


def make_regime(config, pad_id: int | None = None, eos_ids: Sequence[int] | None = None, *,
                tokenizer=None, rank: int = 0, device: Any = None) -> Regime:
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
    sampler = _Sampler(seed=config.seed, max_new_tokens=config.gen_max_new_tokens,
                       temperature=config.gen_temperature, top_p=config.gen_top_p,
                       max_length=config.max_length, pad_id=pad_id, eos_ids=eos_ids, rank=rank)
    if kind == "gkd":
        return GKDRegime(config.gkd_lambda, sampler)
    return DistiLLMRegime(sampler, capacity=config.buffer_capacity, total_steps=config.max_steps,
                          prob_step=config.distillm_prob_step, threshold=config.distillm_threshold)
