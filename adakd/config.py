"""RunConfig: the one validated configuration of a training run.

Each field carries its documentation as dataclass field metadata (`setting(...)`: a help
sentence, a unit, and the allowed values as choices, a `Range` or a text). That one source
gives the CLI's `python -m adakd settings` listing, the Train page's help texts and the
settings table of docs/contracts.md (adakd/config_docs.py; scripts/settings_table.py), and the
range and choice checks below.

`RunConfig(...)` validates in `__post_init__` and raises a `ValueError` naming the field and
what it must be; `RunConfig.from_dict` rejects unknown keys (with close-match suggestions);
`apply_overrides` applies `key=value` strings parsed by the field's type with pydantic (the
CLI's `--set` and the sweep grids use it).

This module imports nothing heavy (no torch), so the dashboard can validate a config cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from adakd import names
from adakd.names import INDICATORS, LATF_KINDS

DIVERGENCES = tuple(names.DIVERGENCES)  # the names; their default parameters are in adakd/names.py
IDTS_MODES = ("on", "off", "inverse")
REGIMES = ("ground_truth", "gkd", "distillm")
OPTIMIZERS = ("adamw", "adamw-fused")
LR_SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16")
LOSS_INPUTS = ("hidden", "logits")
TRAINERS = ("adakd", "trl")
LATF_POOLS = ("micro-batch", "step")
# Fields added after runs were recorded, at the value that reproduces those runs: a config.json
# without the field was made that way (RunConfig.from_record).
RECORDED_DEFAULTS: dict[str, Any] = {"loss_input": "logits"}
DEVICES = ("auto", "cpu", "cuda", "mps")

# Upper bounds of the counts: far past any real run, low enough that a typo (an extra digit, a
# pasted number) is refused with a message instead of allocating or looping for ever.
MAX_COUNT = 10_000_000  # steps, examples, buffer entries
MAX_TOKENS = 1_000_000  # lengths in tokens
MAX_BATCH = 4096  # examples per batch, probe examples, accumulation steps
MAX_LAYERS = 1024
MAX_HIDDEN = 65_536
MAX_SEED = 2**32 - 1  # numpy's seed range


@dataclass(frozen=True)
class Range:
    """The numbers a field allows: `low` .. `high` (None = unbounded), each end included unless
    `low_open` / `high_open`; `note` says what a special value means (e.g. "0 = probes off")."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def __contains__(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {left}{_number(self.low)}, {_number(self.high)}{right}"
        return f"{text} ({self.note})" if self.note else text


def _number(x: float | None) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def setting(
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    help: str,
    unit: str = "",
    choices: tuple[str, ...] = (),
    range: Range | None = None,
    allowed: str = "",
) -> Any:
    """A RunConfig field with its documentation (`dataclasses.field` metadata).

    help: one sentence for the CLI, the Train page and docs/contracts.md. unit: of the value
    ("steps", "tokens", ...). The allowed values, checked by `RunConfig`: `choices` or a
    `range`; `allowed` describes a check written out in `_validate` (lists, cross-field rules).
    """
    metadata = {"help": help, "unit": unit, "choices": choices, "range": range, "allowed": allowed}
    return field(default=default, default_factory=factory, metadata=metadata)


def _optional(hint: Any) -> bool:
    """True for `X | None`."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return union and type(None) in typing.get_args(hint)


def _inner(hint: Any) -> Any:
    """`X` of `X | None`, else the hint itself."""
    return next(a for a in typing.get_args(hint) if a is not type(None)) if _optional(hint) else hint


@dataclass
class RunConfig:
    """A complete, validated description of one distillation run (see docs/contracts.md)."""

    # --- models and data
    teacher: str = setting(
        "smollm2-135m-instruct",
        help="Teacher model: smollm2-135m-instruct (embedded), tiny-random, a Hugging Face id or a local folder.",
        allowed="a non-empty string",
    )
    teacher_sft_steps: int = setting(
        0,
        help="Fine-tune the teacher first: steps of cross-entropy on the training replies, as the paper's "
        "teacher is fine-tuned on its task (seed 0, cached per recipe and shared by every arm and seed; "
        "the student is still built from the teacher as loaded; adakd/training/teacher_sft.py). "
        "0 = distil from the teacher as loaded.",
        unit="steps",
        range=Range(0, MAX_COUNT),
    )
    teacher_sft_lr: float = setting(
        5e-5,
        help="Peak learning rate of the teacher's fine-tuning (AdamW, cosine, 5 % warm-up).",
        range=Range(0, 1, low_open=True),
    )
    student: str = setting(
        "subset",
        help="Student model: subset (some of the teacher's layers), pruned (the teacher with narrower MLPs, "
        "adakd/models/pruning.py), random (a small random Llama with the teacher's vocabulary), tiny-random, "
        "or a Hugging Face id or local folder.",
        allowed="a non-empty string",
    )
    student_layers: list[int] | None = setting(
        None,
        help='Teacher layers the "subset" student keeps, e.g. 0,6,12; null = evenly spaced.',
        allowed="null or a non-empty list of distinct layer indices >= 0",
    )
    random_layers: int = setting(4, help='Layers of the "random" student.', unit="layers", range=Range(1, MAX_LAYERS))
    random_hidden: int = setting(256, help='Hidden size of the "random" student.', range=Range(8, MAX_HIDDEN))
    student_mlp_keep: int = setting(
        768,
        help='MLP neurons the "pruned" student keeps per layer, ranked by activation on training text '
        "(at most the teacher's MLP width: 1,536 for SmolLM2-135M).",
        unit="neurons",
        range=Range(1, MAX_HIDDEN),
    )
    pruning_examples: int = setting(
        64,
        help='Training examples whose activations rank the "pruned" student\'s neurons.',
        unit="examples",
        range=Range(1, MAX_BATCH),
    )
    trust_remote_code: bool = setting(
        False, help="Let a Hugging Face model run its own Python code when it loads (only for models you trust)."
    )
    data: str = setting(
        "chatterbot",
        help="Training data: chatterbot (built in) or a Dolly JSONL / Alpaca JSON file.",
        allowed="a non-empty string",
    )
    eval_data: list[str] = setting(
        factory=list,
        help="Evaluation sets: Dolly JSONL / Alpaca JSON files.",
        allowed="a list of file paths (empty = the held-out split of data)",
    )
    max_train_examples: int | None = setting(
        None,
        help="Training examples used, spread over the training split; null = all.",
        unit="examples",
        range=Range(1, MAX_COUNT),
    )
    max_prompt_length: int = setting(
        128,
        help="Prompt tokens kept (a longer prompt is shortened inside the template).",
        unit="tokens",
        range=Range(1, MAX_TOKENS),
    )
    max_length: int = setting(
        256,
        help="Prompt and response tokens of a training example.",
        unit="tokens",
        allowed=f"> max_prompt_length and <= {MAX_TOKENS:,}",
    )

    # --- loss
    divergence: str = setting(
        "rkl",
        help="Base divergence between teacher and student distributions; rkl is the paper's main base "
        "(docs/method.md §4).",
        choices=DIVERGENCES,
    )
    divergence_params: dict = setting(
        factory=dict,
        help="Parameters of the divergence over its defaults: lam (jsd, sfkl, srkl), alpha and beta (ab), mu (akl).",
        allowed='a JSON object of numbers, e.g. {"lam": 0.9}',
    )
    latf: str = setting(
        "adaptive",
        help="Ratio r of selected tokens: adaptive = LATF's controller; off = every token; fixed, linear, "
        "cosine = Table 4's schedules (docs/method.md §2).",
        choices=LATF_KINDS,
    )
    ratio_start: float = setting(
        1.0,
        help='r₀: the ratio at the first step (the ratio of "fixed").',
        unit="share of tokens",
        range=Range(0, 1, low_open=True),
    )
    ratio_end: float = setting(
        0.5,
        help='r₁: the ratio at the last step ("linear", "cosine").',
        unit="share of tokens",
        range=Range(0, 1, low_open=True),
    )
    latf_beta: float = setting(
        0.99, help="β: smoothing of the LATF controller's loss average (EMA).", range=Range(0, 1, high_open=True)
    )
    latf_eps: float = setting(
        0.05,
        help="ε: relative change of the loss average against its reference that moves r.",
        range=Range(0, 1, high_open=True),
    )
    latf_delta: float = setting(
        0.05, help="δ: relative step of r, r·(1 − δ) or r·(1 + δ).", range=Range(0, 1, high_open=True)
    )
    latf_warmup: float = setting(
        0.05,
        help="Steps before the LATF controller sets its reference.",
        unit="fraction of max_steps",
        range=Range(0, 1, high_open=True),
    )
    latf_min_ratio: float = setting(
        0.1, help="r_min: the LATF controller's floor for r.", unit="share of tokens", range=Range(0, 1, low_open=True)
    )
    latf_pool: str = setting(
        "micro-batch",
        help="Tokens LATF ranks together (and IDTS takes its median over): micro-batch = each micro-batch "
        "its own top k, as the public release; step = all micro-batches of the optimisation step on every "
        "rank, as one batch of them (one extra student forward without gradient per micro-batch; "
        "docs/method.md §2.2).",
        choices=LATF_POOLS,
    )
    idts: str = setting(
        "on",
        help="Per-token temperatures: on = IDTS (hard tokens sharper, easy ones smoother); off = base_temperature "
        "for every token; inverse = the opposite of on (docs/method.md §3).",
        choices=IDTS_MODES,
    )
    idts_c: float = setting(0.5, help="c: IDTS strength; τ stays within τ_base·e^−c … τ_base·e^c.", range=Range(0, 10))
    base_temperature: float = setting(
        1.0,
        help="τ_base: the temperature IDTS scales (the fixed τ with idts off; CTKD's starting τ).",
        range=Range(0, 100, low_open=True),
    )
    indicator: str = setting(
        "hellinger",
        help="Token difficulty indicator; hellinger is the paper's (docs/method.md §1).",
        choices=INDICATORS,
    )
    indicator_topk: int = setting(
        5,
        help="k of the topk (NMTKD rank-violation) indicator; the paper's 5, the public release passes 10.",
        unit="tokens",
        range=Range(1, 1000),
    )
    ctkd: bool = setting(
        False,
        help="CTKD: one learnable global temperature behind a gradient-reversal layer; needs idts off "
        "(docs/method.md §3.1).",
    )
    logit_standardize: bool = setting(
        False,
        help="z-score each token's logits over the vocabulary (both models) before the temperature "
        "(docs/method.md §3.1).",
    )
    loss_input: str = setting(
        "hidden",
        help="What the loss reads: hidden (the last hidden states and the output heads, chunked: the "
        "[B, T, V] logits are never built and only the selected tokens get a gradient) or logits (the "
        "materialised logits); the same loss and gradient up to float rounding (docs/method.md §10).",
        choices=LOSS_INPUTS,
    )
    kd_ratio: float = setting(
        1.0,
        help="Weight of distillation: loss = (1 − kd_ratio)·CE + kd_ratio·KD; 0 runs no teacher forward.",
        range=Range(0, 1, note="1 = pure KD, 0 = pure SFT"),
    )

    # --- data regime (student-generated data; adakd/training/regimes.py)
    regime: str = setting(
        "ground_truth",
        help="Responses trained on: ground_truth (the dataset's), gkd (the student's own samples with "
        "probability gkd_lambda), distillm (DistiLLM's adaptive student samples and replay buffer).",
        choices=REGIMES,
    )
    gkd_lambda: float = setting(
        0.5, help="λ_on: probability that a GKD batch trains on the student's own samples.", range=Range(0, 1)
    )
    gen_max_new_tokens: int = setting(
        48, help="Longest student sample (gkd, distillm).", unit="tokens", range=Range(1, MAX_TOKENS)
    )
    gen_temperature: float = setting(
        1.0, help="Sampling temperature of the student samples.", range=Range(0, low_open=True)
    )
    gen_top_p: float = setting(
        1.0, help="Top-p (nucleus) of the student samples; 1 = off.", range=Range(0, 1, low_open=True)
    )
    buffer_capacity: int = setting(
        1000,
        help="DistiLLM's replay buffer: the newest student samples kept.",
        unit="samples",
        range=Range(1, MAX_COUNT),
    )
    distillm_prob_step: float = setting(
        0.1,
        help="δ: rise of DistiLLM's student-data probability φ when the validation loss comes back up.",
        range=Range(0, 1),
    )
    distillm_threshold: float = setting(
        0.1,
        help="ε: how far the validation loss must come back above its reference before φ rises.",
        unit="nats per token",
        range=Range(0),
    )

    # --- optimisation
    trainer: str = setting(
        "adakd",
        help="The training loop: adakd (this project's) or trl (TRL's DistillationTrainer with the AdaKD loss, "
        "adakd/integrations/trl_distillation.py: the same steps; several processes with accelerate launch). "
        "Both write this run directory.",
        choices=TRAINERS,
    )
    optimizer: str = setting(
        "adamw",
        help="Optimiser: adamw, or adamw-fused (torch's one-pass kernel: the same update up to float rounding, "
        "its step 4.6x faster on a 2-core CPU, so its runs do not repeat adamw runs bit for bit).",
        choices=OPTIMIZERS,
    )
    lr: float = setting(1e-4, help="Peak learning rate.", range=Range(0, 1, low_open=True))
    weight_decay: float = setting(0.0, help="AdamW weight decay.", range=Range(0, 1))
    lr_schedule: str = setting("cosine", help="Learning-rate decay after the warm-up.", choices=LR_SCHEDULES)
    warmup_ratio: float = setting(
        0.0, help="Linear learning-rate warm-up.", unit="fraction of max_steps", range=Range(0, 1, high_open=True)
    )
    max_steps: int = setting(100, help="Training length.", unit="optimiser steps", range=Range(1, MAX_COUNT))
    batch_size: int = setting(4, help="Examples per micro-batch.", unit="examples", range=Range(1, MAX_BATCH))
    grad_accum: int = setting(
        1, help="Micro-batches accumulated per optimiser step.", unit="micro-batches", range=Range(1, MAX_BATCH)
    )
    max_grad_norm: float = setting(
        1.0,
        help="Gradient-norm clipping (the norm is logged either way).",
        range=Range(0, note="0 = no clipping"),
    )
    seed: int = setting(
        0, help="Seed of the student's initialisation, the data order and sampling.", range=Range(0, MAX_SEED)
    )
    dtype: str = setting(
        "auto",
        help="Precision: auto = bf16 autocast on a GPU that supports it, float32 elsewhere.",
        choices=DTYPES,
    )
    device: str = setting("auto", help="auto = CUDA, then Apple MPS, then CPU.", choices=DEVICES)

    # --- instrumentation
    log_interval: int = setting(
        1, help="Steps between lines of metrics.jsonl.", unit="steps", range=Range(1, MAX_COUNT)
    )
    probe_interval: int = setting(
        0,
        help="Steps between probes (tokens.parquet, gradients.parquet).",
        unit="steps",
        range=Range(0, MAX_COUNT, note="0 = probes off"),
    )
    probe_examples: int = setting(
        4, help="Held-out examples whose tokens every probe records.", unit="examples", range=Range(1, MAX_BATCH)
    )
    gradient_batch_size: int = setting(
        8, help="Examples in the gradient probe's batch.", unit="examples", range=Range(1, MAX_BATCH)
    )
    eval_interval: int = setting(
        0,
        help="Steps between evaluations.",
        unit="steps",
        range=Range(0, MAX_COUNT, note="0 = only at the end"),
    )
    eval_examples: int = setting(
        32,
        help="Prompts per evaluation set.",
        unit="prompts",
        range=Range(0, MAX_COUNT, note="0 = no evaluation"),
    )
    eval_max_new_tokens: int = setting(
        48, help="Longest generated reply in an evaluation.", unit="tokens", range=Range(1, MAX_TOKENS)
    )
    eval_greedy: bool = setting(
        False, help="Greedy decoding in evaluations instead of sampling (the protocol samples)."
    )
    eval_seed: int = setting(0, help="First generation seed of an evaluation.", range=Range(0, MAX_SEED))
    eval_seeds: int = setting(
        3,
        help="Generation seeds eval_seed, eval_seed + 1, …; ROUGE-L is their mean.",
        unit="seeds",
        range=Range(1, 100),
    )
    eval_batch_size: int = setting(
        96,
        help="Replies generated per batch in an evaluation (all seeds in one pass; replies do not depend on it).",
        unit="replies",
        range=Range(1, MAX_BATCH),
    )
    eval_holdout: int = setting(
        0,
        help="Prompts with a long reference held out as the test set.",
        unit="prompts",
        range=Range(0, MAX_COUNT, note="0 = the 80/10/10 split"),
    )
    eval_min_reference_words: int = setting(
        11,
        help="Score only references of at least this many words (MiniLLM / DistiLLM: 11).",
        unit="words",
        range=Range(0, MAX_TOKENS, note="0 = every reference"),
    )
    checkpoint_interval: int = setting(
        0,
        help="Steps between checkpoints (one is also written when a run stops).",
        unit="steps",
        range=Range(0, MAX_COUNT, note="0 = only at the end"),
    )
    keep_checkpoints: int = setting(2, help="Newest checkpoints kept.", range=Range(1, 1000))

    def __post_init__(self) -> None:
        _check_types(self)
        _validate(self)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-safe dict (lists and dicts copied)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunConfig:
        """Build from a (possibly partial) dict; unknown keys raise with the valid names."""
        unknown = [k for k in values if k not in cls.field_names()]
        if unknown:
            raise ValueError(unknown_fields_message(unknown, cls.field_names()))
        return cls(**values)

    @classmethod
    def from_record(cls, values: dict[str, Any]) -> RunConfig:
        """The config of a recorded run (config.json's "config"): a field it lacks was added after
        the run was made and takes the value that reproduces it (``RECORDED_DEFAULTS``)."""
        return cls.from_dict({**{k: v for k, v in RECORDED_DEFAULTS.items() if k not in values}, **values})


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(RunConfig)}
TYPES: dict[str, Any] = typing.get_type_hints(RunConfig)  # the fields' types (annotations are strings here)


def allowed_text(name: str) -> str:
    """What field `name` accepts, as its error messages and the docs say it, e.g. "in (0, 1]"."""
    meta = FIELDS[name].metadata
    if meta["choices"]:
        text = f"one of {', '.join(meta['choices'])}"
    elif meta["range"] is not None:
        text = str(meta["range"])
    else:
        text = meta["allowed"]
    return f"{text} or null" if text and _optional(TYPES[name]) and not meta["allowed"] else text


def value_range(name: str) -> tuple[Any, Any]:
    """(low, high) of field `name`'s `Range`, e.g. for a number widget's bounds."""
    limits = FIELDS[name].metadata["range"]
    return limits.low, limits.high


@functools.cache
def _adapter(name: str) -> TypeAdapter:
    """pydantic's validator of the type of field `name`."""
    return TypeAdapter(TYPES[name])


# ---------------------------------------------------------------------- overrides
NULL_WORDS = ("none", "null", "")


def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Return a new RunConfig with `key=value` overrides applied (parsed by field type).

    bool: true/false/yes/no/on/off/1/0; int, float as usual; `X | None` also takes
    none/null/empty; list[int] / list[str]: comma separated or a JSON list (empty = []);
    dict: a JSON object. The result is validated as a whole.
    """
    values = config.to_dict()
    values.update(parse_overrides(overrides))
    return RunConfig.from_dict(values)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings into typed values (no range validation yet)."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        if key not in FIELDS:
            raise ValueError(unknown_fields_message([key], RunConfig.field_names()))
        parsed[key] = parse_value(key, raw.strip())
    return parsed


def parse_value(key: str, raw: str) -> Any:
    """Parse one override value for the field `key` by its type (pydantic, lax: "12" -> 12)."""
    hint = TYPES[key]
    if _optional(hint) and raw.lower() in NULL_WORDS:
        return None
    container = typing.get_origin(_inner(hint)) or _inner(hint)
    try:
        if container in (list, dict) and raw.startswith(("[", "{")):
            return _adapter(key).validate_json(raw)
        if container is list:
            return _adapter(key).validate_python([s.strip() for s in raw.split(",") if s.strip()])
        if container is dict and not raw:
            return {}
        return _adapter(key).validate_strings(raw)
    except ValidationError:
        raise ValueError(f"{key}={raw!r}: cannot parse as {_expected(hint)}") from None


def _expected(hint: Any) -> str:
    """What a value of type `hint` is, in words ("an integer", "a JSON object ...")."""
    if _optional(hint):
        return f"{_expected(_inner(hint))} or null"
    names = {bool: "a bool (true/false)", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return f"a comma-separated list or a JSON list of {'integers' if item is int else 'strings'}"
    if typing.get_origin(hint) is dict or hint is dict:
        return "a JSON object, e.g. '{\"lam\": 0.9}'"
    return str(hint)


def unknown_fields_message(unknown: list[str], valid: list[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=3)
        parts.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return f"unknown config field(s) {', '.join(parts)}; valid fields: {', '.join(valid)}"


# ---------------------------------------------------------------------- validation
def _check_types(c: RunConfig) -> None:
    """Check each field's type with pydantic's strict mode (no "12" for 12, no True for 1);
    ints are taken for floats (JSON writes 1.0 as 1) and come back as floats."""
    for name in FIELDS:
        value = getattr(c, name)
        if isinstance(value, tuple):  # a Python caller's tuple for a list field
            value = list(value)
        try:
            checked = _adapter(name).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"{name} must be {_expected(TYPES[name])} (got {value!r})") from None
        if isinstance(checked, float) and not math.isfinite(checked):
            raise ValueError(f"{name} = {value!r} must be a finite number")
        setattr(c, name, checked)


def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise ValueError(f"{name} = {value!r} is out of range: must be {valid}")


def _check_metadata(c: RunConfig, name: str) -> None:
    """The field's own choices or range (from its `setting` metadata)."""
    value, meta = getattr(c, name), FIELDS[name].metadata
    if value is None:  # an optional field's null: its type check allowed it
        return
    if meta["choices"] and value not in meta["choices"]:
        close = difflib.get_close_matches(str(value), meta["choices"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name} = {value!r} is not valid{hint}: must be {allowed_text(name)}")
    if meta["range"] is not None:
        _check(value in meta["range"], name, value, allowed_text(name))


def _validate(c: RunConfig) -> None:
    for name in FIELDS:
        _check_metadata(c, name)
    # the rules `setting(allowed=...)` describes: each message is that text
    for name in ("teacher", "student", "data"):
        _check(bool(getattr(c, name).strip()), name, getattr(c, name), allowed_text(name))
    if c.student_layers is not None:
        layers = c.student_layers
        _check(
            0 < len(layers) <= MAX_LAYERS
            and all(0 <= x < MAX_LAYERS for x in layers)
            and len(set(layers)) == len(layers),
            "student_layers",
            layers,
            allowed_text("student_layers"),
        )
    _check(all(p.strip() for p in c.eval_data), "eval_data", c.eval_data, allowed_text("eval_data"))
    _check(
        all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in c.divergence_params.items()
        ),
        "divergence_params",
        c.divergence_params,
        allowed_text("divergence_params"),
    )
    _check(
        c.max_prompt_length < c.max_length <= MAX_TOKENS,
        "max_length",
        c.max_length,
        f"> max_prompt_length ({c.max_prompt_length}), leaving room for the response, and <= {MAX_TOKENS:,}",
    )
    # rules across fields
    if c.teacher_sft_steps and c.teacher == names.TINY_RANDOM:
        raise ValueError(
            "teacher_sft_steps > 0 needs a teacher from a folder or a Hugging Face id (the built-in "
            "tiny-random teacher is made in code, not loaded): set teacher_sft_steps = 0 or name a teacher folder"
        )
    if c.trainer == "trl":  # what adakd/integrations/trl_distillation.py runs
        for ok, need in (
            (not c.ctkd, "ctkd = false (CTKD's learned temperature is not wired into TRL's optimiser)"),
            (c.loss_input == "hidden", "loss_input = 'hidden' (TRL's trainer reads hidden states)"),
            (c.kd_ratio > 0, "kd_ratio > 0 (kd_ratio = 0 is fine-tuning: TRL's SFTTrainer)"),
            (c.regime == "ground_truth", "regime = 'ground_truth' (TRL's own on-policy mode: the Python API)"),
        ):
            if not ok:
                raise ValueError(f"trainer = 'trl' needs {need}")
    if c.ctkd and c.idts != "off":
        raise ValueError(
            f"ctkd = true needs idts = 'off' (got idts = {c.idts!r}): CTKD's one learned "
            "temperature replaces the per-token IDTS temperatures"
        )
    if c.ctkd and c.kd_ratio == 0:
        raise ValueError("ctkd = true needs kd_ratio > 0: with no KD term the temperature gets no gradient")
    if c.ctkd and c.base_temperature <= 0.05:
        raise ValueError(
            f"ctkd = true starts the learned temperature at base_temperature, which must be "
            f"> 0.05 (its floor); got {c.base_temperature}"
        )
