"""Set-up of a training run, kept apart from the loop in trainer.py.

    preflight(config)          checks that need no model (paths, divergence parameters, device):
                               called before the run directory is created, so bad input writes nothing
    build_models(config, dev)  teacher (eval, frozen), student (train), tokenizer
    prepare_data(config, tok)  encoded training examples, the fixed probe / gradient batches,
                               the evaluation sets
    probe_examples(config, tok) the probe set as Examples (tokens.parquet's `example` indexes it)
    run_tokenizer(config)      the run's tokenizer alone (no model loaded)
    DataOrder                  the seeded example order, a pure function of (seed, epoch, position)
    build_optimizer / build_scheduler
    run_metadata               the config.json document (docs/contracts.md)

"tiny-random" as teacher or student names a tiny random Llama (adakd.models.loading.tiny_random_llama)
with the SmolLM2 tokenizer: the built-in models of the `smoke` preset and the tests.
"""

from __future__ import annotations

import logging
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adakd import names
from adakd.config import RunConfig
from adakd.runs.limits import check_data_file
from adakd.runs.provenance import git_revision
from adakd.runs.rundir import FORMAT
from adakd.runs.timestamps import utc_now
from adakd.training.device import choose_device_and_dtype, dtype_name

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from adakd.data.instructions import Example

log = logging.getLogger(__name__)

TINY = names.TINY_RANDOM
PRUNED = "pruned"  # the teacher with narrower MLPs (adakd/models/pruning.py)
TINY_TEACHER: dict[str, Any] = {
    "layers": 2,
    "hidden": 64,
    "seed": 1234,
    "initializer_range": 0.3,
}  # fixed: every smoke run sees one teacher
TINY_STUDENT = {"layers": 1, "hidden": 64}
SPLIT_SEED = 0  # the train/val/test split does not move with the run seed: same test set for all runs
VALIDATION_EXAMPLES = 64  # held-out examples of DistiLLM's validation loss (bounded cost per measurement)
VALIDATION_BATCH = 8  # ... scored this many at a time


# ---------------------------------------------------------------------- checks
def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.endswith((".json", ".jsonl"))


def preflight(config: RunConfig) -> None:
    """Raise ValueError (with what to fix) for input that would fail after start-up."""
    from adakd.method.divergences import resolve_params

    # a folder is valid too: chatterbot-format YAML files (adakd.data.instructions.load_examples)
    if config.data != "chatterbot" and not Path(config.data).expanduser().exists():
        raise ValueError(
            f"data file {config.data!r} not found: pass --set data=/path/to/file "
            "(Dolly JSONL or Alpaca JSON) or data=chatterbot"
        )
    for path in config.eval_data:
        if not Path(path).expanduser().is_file():
            raise ValueError(f"eval_data file {path!r} not found")
    # streamed, before any model loads: a 60 MB line must not reach the parser or the tokenizer
    for path in ([] if config.data == "chatterbot" else [config.data]) + list(config.eval_data):
        try:
            check_data_file(path)
        except OSError as err:
            raise ValueError(f"cannot read data file {path!r}: {err.strerror}") from None
    for name in ("teacher", "student"):
        value = getattr(config, name)
        if _looks_local(value) and not Path(value).expanduser().exists():
            raise ValueError(f"{name} path {value!r} does not exist")
    if config.student == TINY and config.teacher != TINY:
        raise ValueError(
            "student = 'tiny-random' needs teacher = 'tiny-random' (the same tokenizer); "
            "use student=random for a small random student of a real teacher"
        )
    try:
        resolve_params(config.divergence, config.divergence_params)
    except ValueError as err:
        raise ValueError(f"divergence_params: {err}") from None
    if config.eval_examples:
        # the protocol needs held-out prompts with long replies: say so now, not after the models load
        build_eval_sets(config)
    choose_device_and_dtype(config)


# ---------------------------------------------------------------------- models
def run_tokenizer(config: RunConfig):
    """The tokenizer build_models gives the run (the teacher's), without loading any model."""
    from adakd.models import loading as models
    from adakd.models.assets import default_teacher_dir

    if config.teacher in (TINY, models.DEFAULT_TEACHER_NAME):
        return models.load_tokenizer(default_teacher_dir())
    return models.load_tokenizer(config.teacher, config.trust_remote_code)


def build_models(config: RunConfig, device: torch.device):
    """(teacher, student, tokenizer): teacher in eval mode with frozen parameters, student in
    train mode, both float32 on `device` (bf16 only through autocast)."""
    from adakd.models import loading as models

    if config.teacher == TINY:
        from adakd.models.assets import default_teacher_dir

        tokenizer = models.load_tokenizer(default_teacher_dir())
        teacher = tiny_teacher(tokenizer)
        student = initial_student(config, teacher, tokenizer)
    elif config.student == PRUNED:
        teacher, tokenizer = models.load_teacher(config.teacher, "cpu", torch.float32, config.trust_remote_code)
        student = pruned_student(config, teacher, tokenizer)
    else:
        pair = models.load_model_pair(
            config.teacher,
            config.student,
            student_layers=config.student_layers,
            random_layers=config.random_layers,
            random_hidden=config.random_hidden,
            device="cpu",
            dtype=torch.float32,
            trust_remote_code=config.trust_remote_code,
            seed=config.seed,
        )
        teacher, student, tokenizer = pair.teacher, pair.student, pair.tokenizer
    if config.teacher_sft_steps:
        # the student came from the teacher as loaded; the run distils from its fine-tuned copy
        teacher = load_distillation_teacher(config)
    teacher = teacher.to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    student = student.to(device=device, dtype=torch.float32).train()
    for p in student.parameters():
        p.requires_grad_(True)
    return teacher, student, tokenizer


def load_distillation_teacher(config: RunConfig) -> PreTrainedModel:
    """The frozen teacher a run distils from, on the CPU in float32: ``config.teacher``, or with
    ``teacher_sft_steps`` its fine-tuned copy (adakd/training/teacher_sft.py; built on first use).
    The tiny-random teacher is made in code, not loaded."""
    from adakd.models import loading as models
    from adakd.training.teacher_sft import distillation_teacher

    if config.teacher == TINY:
        return tiny_teacher(run_tokenizer(config)).eval().requires_grad_(False)
    teacher, _ = models.load_teacher(distillation_teacher(config), "cpu", torch.float32, config.trust_remote_code)
    return teacher


def _special_token_ids(tokenizer) -> dict[str, Any]:
    """The tokenizer's bos / eos / pad ids as model-config fields (the pad id also zeroes
    that embedding row at initialisation)."""
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


# tiny_teacher and initial_student return a PreTrainedModel but say so only in words: transformers
# types PreTrainedModel.to so that mypy rejects the callers' `.to(device)` (see models.build_student).
def tiny_teacher(tokenizer):
    """The "tiny-random" teacher over ``tokenizer``'s vocabulary: TINY_TEACHER with its fixed
    seed, so every run that uses it (and every later rebuild of it) has the same weights."""
    from adakd.models import loading as models

    return models.tiny_random_llama(len(tokenizer), **TINY_TEACHER, **_special_token_ids(tokenizer))


def initial_student(config: RunConfig, teacher: PreTrainedModel, tokenizer):
    """The student ``config`` asks for, before any training, built around ``teacher``.

    "tiny-random": TINY_STUDENT seeded with the run's seed; "pruned": :func:`pruned_student`;
    anything else: ``adakd.models.loading.build_student`` (a layer subset of the teacher, a random
    Llama, or a model id / path). Training (:func:`build_models`) and the explorer's rebuild
    of a run's student (``analysis.run_student``) both call this, so both get the same model.
    """
    from adakd.models import loading as models

    if config.student == TINY:
        return models.tiny_random_llama(
            len(tokenizer), seed=config.seed, **TINY_STUDENT, **_special_token_ids(tokenizer)
        )
    if config.student == PRUNED:
        return pruned_student(config, teacher, tokenizer)
    return models.build_student(
        teacher,
        spec=config.student,
        layers=config.student_layers,
        random_layers=config.random_layers,
        random_hidden=config.random_hidden,
        seed=config.seed,
        trust_remote_code=config.trust_remote_code,
    )


def pruned_student(config: RunConfig, teacher: PreTrainedModel, tokenizer) -> PreTrainedModel:
    """The "pruned" student: the teacher's MLPs cut to ``student_mlp_keep`` neurons per layer,
    ranked on the first ``pruning_examples`` training examples (spread over the fixed split, so
    every category is seen); the same config always gives the same student (adakd/models/pruning.py)."""
    from adakd.data.tokenize import collate
    from adakd.models.pruning import width_pruned_student

    train, _, _ = data_splits(config)
    encoded = _encode_all(spread(train, config.pruning_examples), tokenizer, config)
    if not encoded:
        raise ValueError(
            f"no example of {config.data!r} fits max_length={config.max_length} to rank the "
            "MLP neurons of the pruned student: raise max_length"
        )
    return width_pruned_student(teacher, collate(encoded, pad_token_id(tokenizer)), config.student_mlp_keep, cache=True)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields tied weights once


# ---------------------------------------------------------------------- data
@dataclass
class TrainData:
    train: list[dict]  # encode_example outputs with at least one response token
    probe_batch: dict[str, torch.Tensor]  # the fixed probe set (validation split), collated
    gradient_batch: dict[str, torch.Tensor]  # the fixed gradient batch (training split), collated
    eval_sets: dict[str, list] = field(default_factory=dict)  # dataset name -> EvalPrompts (eval_protocol)
    pad_id: int = 0
    # up to VALIDATION_EXAMPLES encoded validation examples, collated VALIDATION_BATCH at a time
    # (DistiLLM's validation loss; the same fixed set at every measurement)
    validation_batches: list[dict[str, torch.Tensor]] = field(default_factory=list)


def pad_token_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _encode_pairs(examples, tokenizer, config: RunConfig) -> list[tuple[Example, dict]]:
    """(example, its encoding) for the examples with at least one response token."""
    from adakd.data.tokenize import encode_example

    pairs = [(ex, encode_example(tokenizer, ex, config.max_prompt_length, config.max_length)) for ex in examples]
    # a response truncated away entirely has no target: it would only add an empty row
    return [(ex, e) for ex, e in pairs if any(t != -100 for t in e["labels"][1:])]


def _encode_all(examples, tokenizer, config: RunConfig) -> list[dict]:
    return [e for _, e in _encode_pairs(examples, tokenizer, config)]


def _probe_set(held_out: list, train: list, config: RunConfig) -> list:
    """The probe set: probe_examples spread over the held-out items, else the first training one
    (items: encodings in prepare_data, (example, encoding) pairs in probe_examples)."""
    return spread(held_out, config.probe_examples) or train[:1]


def _training_examples(config: RunConfig, train: list) -> list:
    return train if config.max_train_examples is None else spread(train, config.max_train_examples)


def probe_examples(config: RunConfig, tokenizer) -> list[Example]:
    """The examples of the run's probe set, in probe order, as training saw them (the prompt
    shortened to max_prompt_length, adakd.data.tokenize.fit_prompt; the response whole, of which
    training kept the first max_length − prompt tokens): tokens.parquet's `example` is an index
    into this list. The same selection as prepare_data, so it needs the run's tokenizer
    (examples with no response token within max_length are left out)."""
    from adakd.data.tokenize import fit_prompt

    train, val, _ = data_splits(config)
    train = _training_examples(config, train)
    held_out = _encode_pairs(val or train, tokenizer, config)
    first_train = [] if held_out else _encode_pairs(train, tokenizer, config)[:1]
    chosen = [example for example, _ in _probe_set(held_out, first_train, config)]
    return [fit_prompt(tokenizer, example, config.max_prompt_length)[0] for example in chosen]


def spread(items: list, k: int) -> list:
    """k items at evenly spaced indices (all when k >= len): the splits keep the source order
    (chatterbot is grouped by category), so a prefix would cover one category only."""
    n = len(items)
    if k >= n:
        return list(items)
    return [items[i * n // k] for i in range(k)]


def data_splits(config: RunConfig):
    """(train, validation, test) Examples of ``config.data``: the fixed 80/10/10 prompt-group split,
    or with ``eval_holdout`` N the split that holds out N prompts with a long reference
    (``adakd.data.instructions.long_reference_split``). Both use SPLIT_SEED, whatever the run's seed."""
    from adakd.data.instructions import load_examples, long_reference_split, split_examples

    examples = load_examples(config.data)
    if config.eval_holdout:
        return long_reference_split(
            examples, config.eval_holdout, seed=SPLIT_SEED, min_words=config.eval_min_reference_words
        )
    return split_examples(examples, seed=SPLIT_SEED)


def build_eval_sets(config: RunConfig, files=None, count: int | None = None, held_out=None) -> dict[str, list]:
    """Evaluation sets of the protocol (adakd/evaluation/protocol.py): name -> EvalPrompts (duplicate
    prompts merged, references of >= eval_min_reference_words words only, ``count`` prompts spread
    over each set; default ``config.eval_examples``). From ``files`` (Dolly/Alpaca; name = stem),
    else ``config.eval_data``, else the held-out split of ``config.data`` (``held_out`` when the
    caller already has it). Raises when a set ends up empty."""
    from adakd.data.instructions import load_examples
    from adakd.evaluation.protocol import evaluation_prompts

    count = config.eval_examples if count is None else int(count)
    if count < 1:
        raise ValueError(
            f"examples must be >= 1 (got {count}); the run's eval_examples is {config.eval_examples}: pass --examples N"
        )
    files = list(files or config.eval_data)
    if files:
        sources = {Path(f).stem: load_examples(str(f)) for f in files}
    else:
        if held_out is None:
            _, val, test = data_splits(config)
            held_out = test or val
        sources = {"chatterbot" if config.data == "chatterbot" else Path(config.data).stem: held_out}
    sets = {name: evaluation_prompts(exs, count, config.eval_min_reference_words) for name, exs in sources.items()}
    empty = [name for name, prompts in sets.items() if not prompts]
    if empty:
        raise ValueError(
            f"no prompt of {', '.join(empty)} has a reference of >= {config.eval_min_reference_words} "
            "words to evaluate on: set eval_min_reference_words lower (0 = every reference)"
        )
    return sets


def prepare_data(config: RunConfig, tokenizer) -> TrainData:
    """Load, split (fixed split seed), encode; build the fixed probe/gradient batches."""
    from adakd.data.tokenize import collate

    train, val, test = data_splits(config)
    train = _training_examples(config, train)
    encoded = _encode_all(train, tokenizer, config)
    if not encoded:
        raise ValueError(
            f"no training example of {config.data!r} has a response token within "
            f"max_length={config.max_length}: raise max_length"
        )
    dropped = len(train) - len(encoded)
    if dropped:
        log.warning(
            "%d of %d training examples have no response token within max_length=%d; dropped",
            dropped,
            len(train),
            config.max_length,
        )
    pad = pad_token_id(tokenizer)
    held_out = _encode_all(val or train, tokenizer, config)
    probe = _probe_set(held_out, encoded, config)
    validation = spread(held_out, VALIDATION_EXAMPLES) or encoded[:1]
    validation_batches = [
        collate(validation[i : i + VALIDATION_BATCH], pad) for i in range(0, len(validation), VALIDATION_BATCH)
    ]
    gradient = spread(encoded, config.gradient_batch_size)
    eval_sets = build_eval_sets(config, held_out=test or val) if config.eval_examples else {}
    return TrainData(encoded, collate(probe, pad), collate(gradient, pad), eval_sets, pad, validation_batches)


class DataOrder:
    """Example order: epoch e is a permutation drawn from a generator seeded with (seed, e).

    `index(position)` maps the global count of examples consumed so far to an example, so the
    order (and a resume from any position) depends on nothing but the seed; the global RNG is
    never touched.
    """

    def __init__(self, n: int, seed: int):
        if n < 1:
            raise ValueError("DataOrder needs at least one example")
        self.n, self.seed = n, seed
        self._epoch = -1
        self._perm: list[int] = []  # the permutation of epoch self._epoch (none yet)

    def permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).tolist()
        return self._perm

    def index(self, position: int) -> int:
        epoch, i = divmod(position, self.n)
        return self.permutation(epoch)[i]


# ---------------------------------------------------------------------- optimisation
def build_optimizer(
    config: RunConfig, model: torch.nn.Module, extra: torch.nn.Module | None = None
) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases and norm weights (1-D parameters), as is standard.

    ``extra``: a module trained with the student (CTKD's temperature), as a third group
    without weight decay, at the student's learning rate and schedule.

    "adamw" runs torch's multi-tensor (foreach) implementation: on CUDA that is torch's default,
    on a CPU it gives the same bits as the per-tensor loop torch would pick there (checked on the
    demo student) while its step is ~10 % faster. "adamw-fused" is torch's fused kernel: one pass
    over parameters, gradients and moments (0.07 s against 0.29 s per step for the demo's 94.7 M
    parameters on 2 CPU cores), equal to AdamW up to float rounding (max difference 6e-8 after
    9 steps), so an adamw-fused run does not repeat an adamw run bit for bit.
    """
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if extra is not None:
        groups.append({"params": list(extra.parameters()), "weight_decay": 0.0})
    fused = config.optimizer == "adamw-fused"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, foreach=not fused, fused=fused)


def ratio_schedule(config: RunConfig):
    """LATF's ratio schedule as the config sets it (``adakd.method.latf.make_ratio_schedule``)."""
    from adakd.method.latf import make_ratio_schedule

    return make_ratio_schedule(
        config.latf,
        config.max_steps,
        start=config.ratio_start,
        end=config.ratio_end,
        beta=config.latf_beta,
        eps=config.latf_eps,
        delta=config.latf_delta,
        warmup=config.latf_warmup,
        min_ratio=config.latf_min_ratio,
    )


def loss_settings(config: RunConfig, ratio: float) -> dict[str, Any]:
    """The keyword arguments of ``adakd_loss`` / ``adakd_loss_from_hidden`` that the config sets,
    at LATF ratio `ratio` (the caller adds labels, CTKD's τ and a pooled share)."""
    return dict(
        ratio=ratio,
        divergence=config.divergence,
        c=config.idts_c,
        base_temperature=config.base_temperature,
        idts=config.idts != "off",
        indicator=config.indicator,
        divergence_params=config.divergence_params or None,
        inverse=config.idts == "inverse",
        kd_ratio=config.kd_ratio,
        topk=config.indicator_topk,
        standardize=config.logit_standardize,
    )


def pooled_shares(config: RunConfig, pool: list, ratio: float) -> list:
    """latf_pool = step: LATF's selection and IDTS's τ over the pooled scores, as the config sets
    them (``adakd.method.pooled_selection.pool_selection``)."""
    from adakd.method.pooled_selection import pool_selection

    return pool_selection(
        pool, ratio, config.idts != "off", config.base_temperature, config.idts_c, config.idts == "inverse"
    )


def build_scheduler(config: RunConfig, optimizer: torch.optim.Optimizer):
    """transformers' LR schedules: linear warm-up over warmup_ratio·max_steps, then
    cosine / linear decay to 0, or constant."""
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[config.lr_schedule]
    warmup = round(config.warmup_ratio * config.max_steps)
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=config.max_steps)


# ---------------------------------------------------------------------- config.json
def _versions() -> dict[str, str | None]:
    import transformers

    import adakd

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "adakd": getattr(adakd, "__version__", None),
    }


def run_metadata(
    config: RunConfig,
    *,
    name: str,
    preset: str | None,
    command: list[str],
    device: torch.device,
    dtype: torch.dtype,
    reason: str,
    teacher,
    student,
) -> dict[str, Any]:
    """The config.json document (format 1)."""
    from adakd.training.teacher_sft import built_record

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "format": FORMAT,
        "name": name,
        "preset": preset,
        "config": config.to_dict(),
        "seed": config.seed,
        "device": device.type,
        "dtype": dtype_name(dtype),
        "device_reason": reason,
        "versions": _versions(),
        "git_revision": git_revision(),
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "gpu": gpu},
        "command": list(command),
        "started_at": utc_now(),
        "num_parameters": {"teacher": count_parameters(teacher), "student": count_parameters(student)},
        "teacher_sft": built_record(config),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
    }


def default_run_name(preset: str | None) -> str:
    """`<preset>-YYYYmmdd-HHMMSS` (UTC), a safe folder name."""
    stamp = utc_now().replace("-", "").replace(":", "").replace("T", "-").rstrip("Z")
    return re.sub(r"[^A-Za-z0-9._=+,@-]", "-", f"{preset or 'run'}-{stamp}")
