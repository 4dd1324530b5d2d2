"""Models for the token explorer: loaded once, cached, and released (memory, CUDA cache) on eviction.

A `ModelSpec` names a teacher/student pair: the models of a run (built from its config.json
exactly as the trainer built them, the student optionally restored from a checkpoint) or the
tiny random pair of the `smoke` preset. `st.cache_resource` keeps at most two pairs; when one
is evicted or the cache is cleared, `_release` drops it and empties the CUDA cache so GPU
memory really comes back. The teacher's reply and attribution results are cached with
`st.cache_data`; a scored reply (forward passes done, r and c not yet applied) with
`st.cache_resource`.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass

import pandas as pd
import streamlit as st

log = logging.getLogger(__name__)
ATTRIBUTION_PROMPT_TOKENS = 256  # attribution sees at most the last 256 prompt tokens (one pass each)


@dataclass(frozen=True)
class ModelSpec:
    """Hashable description of a teacher/student pair (the cache key)."""

    kind: str  # "run" | "tiny"
    config: str  # RunConfig fields as sorted JSON
    run_dir: str | None = None
    step: int | None = None  # checkpoint step of the student; None = at initialisation


@dataclass
class ModelPair:
    teacher: object
    student: object
    tokenizer: object
    device: str


def config_json(values: dict) -> str:
    """A run config as the hashable cache key of these functions (sorted JSON)."""
    return json.dumps(values, sort_keys=True)


def _tiny_spec() -> ModelSpec:
    from adakd.presets import PRESETS

    return ModelSpec("tiny", config_json(dict(PRESETS["smoke"])))


TINY_SPEC = _tiny_spec()


def run_spec(run, step: int | None) -> ModelSpec:
    """The pair of a loaded analysis Run, the student at checkpoint `step` (None = initial)."""
    return ModelSpec("run", config_json(run.config), str(run.path), step)


def teacher_to_build(spec: ModelSpec) -> str | None:
    """The cache folder of the fine-tuned teacher a run's pair needs when this machine has not
    built it yet (adakd/training/teacher_sft.py: loading the pair fine-tunes it first, minutes)."""
    if spec.kind != "run":
        return None
    from adakd.config import RunConfig
    from adakd.training.teacher_sft import teacher_to_build as folder_to_build

    try:
        config = RunConfig.from_dict(json.loads(spec.config))
    except ValueError:  # load_pair says what is wrong with the config
        return None
    folder = folder_to_build(config)
    return None if folder is None else str(folder)


def describe(spec: ModelSpec) -> str:
    config = json.loads(spec.config)
    student = config.get("student", "subset")
    if student == "subset" and config.get("student_layers"):
        student += f" (layers {', '.join(map(str, config['student_layers']))})"
    when = "at initialisation" if spec.step is None else f"at step {spec.step}"
    return f"Teacher `{config.get('teacher')}` · student `{student}` {when}."


def _release(pair: ModelPair) -> None:
    """on_release of the model cache: drop the models and give GPU memory back."""
    log.info("releasing cached models (%s)", pair.device)
    pair.teacher = pair.student = None
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


@st.cache_resource(max_entries=2, on_release=_release, show_spinner=False)
def load_pair(spec: ModelSpec) -> ModelPair:
    """Build the pair the way the trainer did (adakd.training.runsetup.build_models), on the best device."""
    from adakd.config import RunConfig
    from adakd.training.device import choose_device_and_dtype
    from adakd.training.runsetup import build_models

    values = {**json.loads(spec.config), "device": "auto", "dtype": "auto"}
    config = RunConfig.from_dict(values)
    device, _, _ = choose_device_and_dtype(config)
    teacher, student, tokenizer = build_models(config, device)
    if spec.step is not None:  # the trained student of the run, restored from its checkpoint
        from analysis.explorer import load_student_checkpoint

        student = load_student_checkpoint(spec.run_dir, step=spec.step, teacher=teacher)
    student.eval()
    return ModelPair(teacher, student, tokenizer, str(device))


def explore(
    spec: ModelSpec,
    prompt: str,
    reference: str | None,
    *,
    ratio: float,
    c: float,
    max_new_tokens: int,
    context: str = "",
):
    """analysis.explorer.explore_prompt on the spec's models: the teacher's reply and the
    forward passes are cached (:func:`scored_reply`), so a new r or c costs milliseconds."""
    from analysis.explorer import apply_settings

    scored = scored_reply(spec, prompt, reference, max_new_tokens=max_new_tokens, context=context)
    return apply_settings(scored, ratio=ratio, c=c, base_temperature=base_temperature(spec))


def base_temperature(spec: ModelSpec) -> float:
    """The run's τ₀ (1.0 where its config does not set one)."""
    return float(json.loads(spec.config).get("base_temperature", 1.0))


# A resource, not data: the ScoredReply holds the student's logits [N, V] (~12 MB at 64 tokens),
# which st.cache_data would pickle and copy on every hit; apply_settings never mutates it.
@st.cache_resource(max_entries=8, show_spinner=False)
def scored_reply(spec: ModelSpec, prompt: str, reference: str | None, *, max_new_tokens: int, context: str = ""):
    """analysis.explorer.score_reply on the spec's models: everything r and c do not change."""
    from analysis.explorer import score_reply

    pair = load_pair(spec)
    reply = None if reference else list(teacher_reply(spec, prompt, max_new_tokens, context))
    return score_reply(
        pair.teacher,
        pair.student,
        pair.tokenizer,
        prompt,
        reference,
        top_k=5,
        max_new_tokens=max_new_tokens,
        reply_ids=reply,
        context=context,
    )


@st.cache_data(max_entries=16, show_spinner=False)
def probe_examples(config: str) -> list:
    """The run's probe set (adakd.training.runsetup.probe_examples) from its config as sorted JSON:
    only the tokenizer and the data are loaded, no model."""
    from adakd.config import RunConfig
    from adakd.training.runsetup import probe_examples as examples_of
    from adakd.training.runsetup import run_tokenizer

    run_config = RunConfig.from_dict(json.loads(config))
    return examples_of(run_config, run_tokenizer(run_config))


@st.cache_data(max_entries=32, show_spinner=False)
def teacher_reply(spec: ModelSpec, prompt: str, max_new_tokens: int, context: str) -> tuple[int, ...]:
    """The teacher's greedy reply, kept apart so that moving r or c only re-scores it."""
    from analysis.explorer import teacher_reply as reply_of

    pair = load_pair(spec)
    reply = reply_of(pair.teacher, pair.student, pair.tokenizer, prompt, max_new_tokens=max_new_tokens, context=context)
    return tuple(reply)


@st.cache_data(max_entries=32, show_spinner=False)
def _attribute(spec: ModelSpec, prompt_ids: tuple, response_ids: tuple, token: int, method: str):
    from analysis.attribution import attribute_token

    pair = load_pair(spec)
    return tuple(
        attribute_token(
            model,
            pair.tokenizer,
            list(prompt_ids),
            list(response_ids),
            token,
            method=method,
            max_prompt_tokens=ATTRIBUTION_PROMPT_TOKENS,
        )
        for model in (pair.teacher, pair.student)
    )


def attribute(spec: ModelSpec, result, token: int, method: str):
    """(teacher, student) AttributionResults of response token `token` of an explorer result."""
    return _attribute(spec, tuple(result.prompt_ids), tuple(result.response_ids), int(token), method)


def attribution_figure(results):
    from analysis.attribution import attribution_figure as figure

    return figure(*results)


def attribution_frame(results) -> pd.DataFrame:
    """The scores behind the attribution figure, one row per (model, prompt token)."""
    rows = []
    for model, res in zip(("teacher", "student"), results, strict=True):
        for i, (tok, score) in enumerate(zip(res.tokens, res.scores, strict=True)):
            rows.append(
                {
                    "model": model,
                    "prompt_token_index": i,
                    "token": tok,
                    "score": float(score),
                    "target_index": res.target_index,
                    "target_token": res.target_token,
                    "method": res.method,
                }
            )
    return pd.DataFrame(rows)
