"""RunConfig: the one validated configuration of a training run.

Every field is listed in docs/contracts.md. `RunConfig(...)` validates in `__post_init__`
and raises a `ValueError` naming the field and its valid range; `RunConfig.from_dict`
rejects unknown keys (with close-match suggestions); `apply_overrides` applies
`key=value` strings as typed by the field (the CLI's `--set` and the sweep grids use it).

This module imports nothing heavy (no torch), so the dashboard can validate a config cheaply.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

DIVERGENCES = ("fkl", "rkl", "jsd", "tvd", "sfkl", "srkl", "ab", "akl")
LATF_KINDS = ("adaptive", "off", "fixed", "linear", "cosine")
IDTS_MODES = ("on", "off", "inverse")
INDICATORS = ("hellinger", "fkl", "rkl", "jsd", "ce", "entropy", "topk")
REGIMES = ("ground_truth", "gkd", "distillm")
OPTIMIZERS = ("adamw",)
LR_SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "float32", "bfloat16")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class RunConfig:
    """A complete, validated description of one distillation run (see docs/contracts.md)."""

    # --- models and data
    teacher: str = "smollm2-135m-instruct"
    student: str = "subset"
    student_layers: list[int] | None = None  # None: evenly spaced teacher layers (models.py)
    random_layers: int = 4
    random_hidden: int = 256
    student_mlp_keep: int = 768  # "pruned": MLP neurons kept per layer (adakd/pruning.py)
    pruning_examples: int = 64  # "pruned": training examples whose activations rank the neurons
    trust_remote_code: bool = False
    data: str = "chatterbot"
    eval_data: list[str] = field(default_factory=list)
    max_train_examples: int | None = None
    max_prompt_length: int = 128
    max_length: int = 256

    # --- loss
    divergence: str = "rkl"
    divergence_params: dict = field(default_factory=dict)
    latf: str = "adaptive"
    ratio_start: float = 1.0
    ratio_end: float = 0.5
    latf_beta: float = 0.99
    latf_eps: float = 0.05
    latf_delta: float = 0.05
    latf_warmup: float = 0.05
    latf_min_ratio: float = 0.1
    idts: str = "on"
    idts_c: float = 0.5
    base_temperature: float = 1.0
    indicator: str = "hellinger"
    indicator_topk: int = 5  # k of the topk (NMTKD rank-violation) indicator; the public release uses 10
    ctkd: bool = False  # CTKD: one learnable global temperature behind a gradient-reversal layer
    logit_standardize: bool = False  # z-score each token's logits over V (both models) before τ
    kd_ratio: float = 1.0

    # --- data regime (student-generated data; adakd/regimes.py)
    regime: str = "ground_truth"
    gkd_lambda: float = 0.5
    gen_max_new_tokens: int = 48
    gen_temperature: float = 1.0
    gen_top_p: float = 1.0
    buffer_capacity: int = 1000
    distillm_prob_step: float = 0.1
    distillm_threshold: float = 0.1

    # --- optimisation
    optimizer: str = "adamw"
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    warmup_ratio: float = 0.0
    max_steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 1.0  # 0 = no clipping (the norm is still logged)
    seed: int = 0
    dtype: str = "auto"
    device: str = "auto"

    # --- instrumentation
    log_interval: int = 1
    probe_interval: int = 0  # 0 = probes off
    probe_examples: int = 4
    gradient_batch_size: int = 8
    eval_interval: int = 0  # 0 = only at the end
    eval_examples: int = 32  # 0 = no evaluation at all
    eval_max_new_tokens: int = 48
    eval_greedy: bool = False
    eval_seed: int = 0
    eval_seeds: int = 3  # generation seeds eval_seed, eval_seed+1, ...: ROUGE-L is their mean
    eval_holdout: int = 0  # 0 = 80/10/10 split; N = hold out N prompts with a long reference as the test set
    eval_min_reference_words: int = 11  # MiniLLM/DistiLLM: only references of >= 11 words (0 = all)
    checkpoint_interval: int = 0  # 0 = only at the end (and when stopped)
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        _coerce_types(self)
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
            raise ValueError(_unknown_message(unknown, cls.field_names()))
        return cls(**values)


# ---------------------------------------------------------------------- overrides
def apply_overrides(config: RunConfig, overrides: list[str]) -> RunConfig:
    """Return a new RunConfig with `key=value` overrides applied (parsed by field type).

    bool: true/false/yes/no/on/off/1/0; int, float as usual; `int | None` also takes
    none/null; list[int] / list[str]: comma separated or a JSON list (empty = []);
    dict: JSON object. The result is validated as a whole.
    """
    values = config.to_dict()
    values.update(parse_overrides(overrides))
    return RunConfig.from_dict(values)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """Parse `key=value` strings into typed values (no range validation yet)."""
    hints = typing.get_type_hints(RunConfig)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value")
        if key not in hints:
            raise ValueError(_unknown_message([key], RunConfig.field_names()))
        parsed[key] = parse_value(key, hints[key], raw.strip())
    return parsed


def parse_value(key: str, hint: Any, raw: str) -> Any:
    """Parse one override value for the field `key` of type `hint`."""
    args = typing.get_args(hint)
    optional = type(None) in args and (typing.get_origin(hint) in (typing.Union, types.UnionType))
    if optional:
        if raw.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint) or hint
    try:
        if hint is bool:
            low = raw.lower()
            if low in ("true", "yes", "on", "1"):
                return True
            if low in ("false", "no", "off", "0"):
                return False
            raise ValueError
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str:
            return raw
        if origin is list:
            (item_type,) = typing.get_args(hint) or (str,)
            if raw.startswith("["):
                items = json.loads(raw)
            else:
                items = [s.strip() for s in raw.split(",") if s.strip()]
            return [item_type(x) for x in items]
        if origin is dict:
            value = json.loads(raw) if raw else {}
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (ValueError, TypeError, json.JSONDecodeError):
        pass
    raise ValueError(f"{key}={raw!r}: cannot parse as {_type_name(hint)}")


def _type_name(hint: Any) -> str:
    names = {bool: "a bool (true/false)", int: "an integer", float: "a number", str: "a string"}
    if hint in names:
        return names[hint]
    if typing.get_origin(hint) is list:
        return "a comma-separated list or a JSON list"
    if typing.get_origin(hint) is dict or hint is dict:
        return "a JSON object, e.g. '{\"lam\": 0.9}'"
    return str(hint)


def _unknown_message(unknown: list[str], valid: list[str]) -> str:
    parts = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid, n=3)
        parts.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    return f"unknown config field(s) {', '.join(parts)}; valid fields: {', '.join(valid)}"


# ---------------------------------------------------------------------- validation
def _coerce_types(c: RunConfig) -> None:
    """Check each field's type; accept ints for floats (JSON writes 1.0 as 1)."""
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(c):
        value, hint = getattr(c, f.name), hints[f.name]
        args = typing.get_args(hint)
        if type(None) in args and typing.get_origin(hint) in (typing.Union, types.UnionType):
            if value is None:
                continue
            hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint) or hint
        if hint is float and isinstance(value, int) and not isinstance(value, bool):
            setattr(c, f.name, float(value))
        elif hint is float and isinstance(value, float):
            pass
        elif hint is int and isinstance(value, int) and not isinstance(value, bool):
            pass
        elif hint in (bool, str) and isinstance(value, hint):
            pass
        elif origin is list and isinstance(value, (list, tuple)):
            (item_type,) = typing.get_args(hint)
            bad = [x for x in value if not isinstance(x, item_type) or isinstance(x, bool) and item_type is int]
            if bad:
                raise ValueError(f"{f.name} must be {_type_name(hint)} of {item_type.__name__} (got {value!r})")
            setattr(c, f.name, list(value))
        elif origin is dict and isinstance(value, dict):
            setattr(c, f.name, dict(value))
        else:
            raise ValueError(f"{f.name} must be {_type_name(hint)} (got {value!r})")


# Upper bounds of the counts: far past any real run, low enough that a typo (an extra digit, a
# pasted number) is refused with a message instead of allocating or looping for ever.
MAX_COUNT = 10_000_000  # steps, examples, buffer entries
MAX_TOKENS = 1_000_000  # lengths in tokens
MAX_BATCH = 4096  # examples per batch, probe examples, accumulation steps
MAX_LAYERS = 1024
MAX_HIDDEN = 65_536
MAX_SEED = 2**32 - 1  # numpy's seed range


def _bounded(c: RunConfig, name: str, low: int, high: int, note: str = "") -> None:
    value = getattr(c, name)
    _check(low <= value <= high, name, value, f"in [{low}, {high:,}]{note}")


def _check(ok: bool, name: str, value: Any, valid: str) -> None:
    if not ok:
        raise ValueError(f"{name} = {value!r} is out of range: must be {valid}")


def _choice(c: RunConfig, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(c, name)
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"{name} = {value!r} is not valid{hint}: must be one of {', '.join(choices)}")


def _finite(c: RunConfig) -> None:
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} = {value!r} must be a finite number")


def _validate(c: RunConfig) -> None:
    _finite(c)
    for name in ("teacher", "student", "data"):
        _check(bool(getattr(c, name).strip()), name, getattr(c, name), "a non-empty string")
    if c.student_layers is not None:
        layers = c.student_layers
        _check(
            0 < len(layers) <= MAX_LAYERS
            and all(0 <= x < MAX_LAYERS for x in layers)
            and len(set(layers)) == len(layers),
            "student_layers",
            layers,
            "null or a non-empty list of distinct layer indices >= 0",
        )
    _bounded(c, "random_layers", 1, MAX_LAYERS)
    _bounded(c, "random_hidden", 8, MAX_HIDDEN)
    _bounded(c, "student_mlp_keep", 1, MAX_HIDDEN, " (at most the teacher's MLP width)")
    _bounded(c, "pruning_examples", 1, MAX_BATCH)
    _check(
        all(isinstance(p, str) and p.strip() for p in c.eval_data),
        "eval_data",
        c.eval_data,
        "a list of file paths (empty = the held-out split of data)",
    )
    if c.max_train_examples is not None:
        _bounded(c, "max_train_examples", 1, MAX_COUNT, " or null")
    _bounded(c, "max_prompt_length", 1, MAX_TOKENS)
    _check(
        c.max_prompt_length < c.max_length <= MAX_TOKENS,
        "max_length",
        c.max_length,
        f"> max_prompt_length ({c.max_prompt_length}), leaving room for the response, and <= {MAX_TOKENS:,}",
    )

    _choice(c, "divergence", DIVERGENCES)
    _check(
        all(
            isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
            for k, v in c.divergence_params.items()
        ),
        "divergence_params",
        c.divergence_params,
        'a JSON object of numbers, e.g. {"lam": 0.9}',
    )
    _choice(c, "latf", LATF_KINDS)
    _check(0 < c.ratio_start <= 1, "ratio_start", c.ratio_start, "in (0, 1]")
    _check(0 < c.ratio_end <= 1, "ratio_end", c.ratio_end, "in (0, 1]")
    _check(0 <= c.latf_beta < 1, "latf_beta", c.latf_beta, "in [0, 1)")
    _check(0 <= c.latf_eps < 1, "latf_eps", c.latf_eps, "in [0, 1)")
    _check(0 <= c.latf_delta < 1, "latf_delta", c.latf_delta, "in [0, 1)")
    _check(0 <= c.latf_warmup < 1, "latf_warmup", c.latf_warmup, "in [0, 1) (a fraction of max_steps)")
    _check(0 < c.latf_min_ratio <= 1, "latf_min_ratio", c.latf_min_ratio, "in (0, 1]")
    _choice(c, "idts", IDTS_MODES)
    _check(0 <= c.idts_c <= 10, "idts_c", c.idts_c, "in [0, 10]")
    _check(0 < c.base_temperature <= 100, "base_temperature", c.base_temperature, "in (0, 100]")
    _choice(c, "indicator", INDICATORS)
    _check(1 <= c.indicator_topk <= 1000, "indicator_topk", c.indicator_topk, "in [1, 1000]")
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
    _check(0 <= c.kd_ratio <= 1, "kd_ratio", c.kd_ratio, "in [0, 1] (1 = pure KD, 0 = pure SFT)")

    _choice(c, "regime", REGIMES)
    _check(0 <= c.gkd_lambda <= 1, "gkd_lambda", c.gkd_lambda, "in [0, 1]")
    _bounded(c, "gen_max_new_tokens", 1, MAX_TOKENS)
    _check(c.gen_temperature > 0, "gen_temperature", c.gen_temperature, "> 0")
    _check(0 < c.gen_top_p <= 1, "gen_top_p", c.gen_top_p, "in (0, 1]")
    _bounded(c, "buffer_capacity", 1, MAX_COUNT)
    _check(0 <= c.distillm_prob_step <= 1, "distillm_prob_step", c.distillm_prob_step, "in [0, 1]")
    _check(c.distillm_threshold >= 0, "distillm_threshold", c.distillm_threshold, ">= 0")

    _choice(c, "optimizer", OPTIMIZERS)
    _check(0 < c.lr <= 1, "lr", c.lr, "in (0, 1]")
    _check(0 <= c.weight_decay <= 1, "weight_decay", c.weight_decay, "in [0, 1]")
    _choice(c, "lr_schedule", LR_SCHEDULES)
    _check(0 <= c.warmup_ratio < 1, "warmup_ratio", c.warmup_ratio, "in [0, 1)")
    _bounded(c, "max_steps", 1, MAX_COUNT)
    _bounded(c, "batch_size", 1, MAX_BATCH)
    _bounded(c, "grad_accum", 1, MAX_BATCH)
    _check(c.max_grad_norm >= 0, "max_grad_norm", c.max_grad_norm, ">= 0 (0 = no clipping)")
    _bounded(c, "seed", 0, MAX_SEED)
    _choice(c, "dtype", DTYPES)
    _choice(c, "device", DEVICES)

    _bounded(c, "log_interval", 1, MAX_COUNT)
    _bounded(c, "probe_interval", 0, MAX_COUNT, " (0 = probes off)")
    _bounded(c, "probe_examples", 1, MAX_BATCH)
    _bounded(c, "gradient_batch_size", 1, MAX_BATCH)
    _bounded(c, "eval_interval", 0, MAX_COUNT, " (0 = only at the end)")
    _bounded(c, "eval_examples", 0, MAX_COUNT, " (0 = no evaluation)")
    _bounded(c, "eval_max_new_tokens", 1, MAX_TOKENS)
    _bounded(c, "eval_seed", 0, MAX_SEED)
    _bounded(c, "eval_seeds", 1, 100, " (generation seeds averaged)")
    _bounded(c, "eval_holdout", 0, MAX_COUNT, " (0 = the 80/10/10 split)")
    _bounded(c, "eval_min_reference_words", 0, MAX_TOKENS, " (0 = every reference)")
    _bounded(c, "checkpoint_interval", 0, MAX_COUNT, " (0 = only at the end)")
    _bounded(c, "keep_checkpoints", 1, 1000)
