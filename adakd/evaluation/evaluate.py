"""Evaluation as the paper scores it: sampled responses, ROUGE-L F-measure ×100 (Porter stemmer).

- :func:`rouge_l`: ``rouge-score``'s ROUGE-L F-measure with stemming, ×100, max over references.
- :func:`generate_for_seeds`: batched, left-padded, KV-cached generation of every (seed, prompt)
  reply in one pass; sampling (top-p 1.0, temperature 1.0 by default) with one seeded generator
  per reply, so a reply does not depend on its batch; greedy as an option. The global RNG is
  not touched, so evaluating never changes what training draws next.
  :func:`generate_responses`: the same for one seed.
- :func:`evaluate_model`: one ``eval.jsonl`` record (docs/contracts.md) for a model over named
  datasets of :class:`adakd.data.instructions.Example`.
- :func:`evaluate_run`: ``python -m adakd eval RUN [--data FILE ...]``: score a run's latest
  checkpoint on any Dolly/Alpaca-schema files (or the run's held-out split), append to eval.jsonl.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from transformers import GenerationConfig

from adakd.data.tokenize import encode_prompt
from adakd.evaluation.decoding import (
    STOP_TOKENS,
    decoding_config,
    row_seed,
    row_seeded_sampling,
    without_model_defaults,
)
from adakd.training.probes import untouched

if TYPE_CHECKING:
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- ROUGE-L
@functools.lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    """max_ref ROUGE-L F-measure(prediction, ref) × 100.

    F = (1+β²)·P·R / (R + β²·P) with β = 1 (rouge-score), P = LCS/|prediction|,
    R = LCS/|reference| over rouge-score's tokens (lower-cased alphanumeric words, Porter-stemmed).
    An empty prediction (or reference) scores 0.
    """
    if isinstance(references, str):
        references = [references]
    if not references:
        raise ValueError("rouge_l needs at least one reference")
    scorer = _scorer()
    return max(scorer.score(ref, prediction)["rougeL"].fmeasure for ref in references) * 100.0


# ---------------------------------------------------------------------- generation
def stop_token_ids(tokenizer) -> list[int]:
    """Ids that end a response: the tokenizer's eos plus <|im_end|> / <|endoftext|> if known."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    vocab = tokenizer.get_vocab()
    ids += [vocab[t] for t in STOP_TOKENS if t in vocab]
    if not ids:
        raise ValueError("the tokenizer has no eos token: generation would never stop early")
    return list(dict.fromkeys(ids))


def generate_responses(
    model: PreTrainedModel,
    tokenizer,
    examples: Sequence,
    *,
    max_new_tokens: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    max_prompt_length: int = 256,
) -> list[str]:
    """Responses of ``model`` to each example's prompt under one generation seed, in order
    (decoded, special tokens removed, stripped; cut at the first stop token).
    ``generate_for_seeds(..., seeds=[seed])[0]``."""
    return generate_for_seeds(
        model,
        tokenizer,
        examples,
        seeds=[seed],
        max_new_tokens=max_new_tokens,
        greedy=greedy,
        temperature=temperature,
        top_p=top_p,
        batch_size=batch_size,
        max_prompt_length=max_prompt_length,
    )[0]


def generate_for_seeds(
    model: PreTrainedModel,
    tokenizer,
    examples: Sequence,
    *,
    seeds: Sequence[int],
    max_new_tokens: int,
    greedy: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 8,
    max_prompt_length: int = 256,
) -> list[list[str]]:
    """``replies[s][i]``: the reply to example i under generation seed ``seeds[s]``.

    Sampling draws from softmax(z/temperature) restricted to the top-p nucleus and nothing else
    (``adakd.evaluation.decoding.row_seeded_sampling``): the reply to example i under seed s comes from its
    own generator, seeded with ``row_seed(s, i)``, so it is the same whatever the batch size and
    whichever rows share its batch (the width of the left padding moves logits only in their last
    bits; it changed none of 300 demo replies across batch sizes 32-150). That lets every
    (seed, prompt) row go through one pass of batches of ``batch_size`` rows, sorted by prompt
    length (left-padded, KV cache on), instead of one pass per seed. Greedy decoding has one
    reply list (seeds beyond the first would repeat it). Neither the global RNG nor the model's
    train/eval modes are changed.
    """
    if max_new_tokens < 1 or batch_size < 1 or max_prompt_length < 1:
        raise ValueError("max_new_tokens, batch_size and max_prompt_length must be >= 1")
    if not greedy and (temperature <= 0 or not 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    if not seeds:
        raise ValueError("generate_for_seeds needs at least one seed")
    stop = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    # the exact prompt ids training used (shortened inside the template when too long)
    prompts = [encode_prompt(tokenizer, ex, max_prompt_length) for ex in examples]
    seed_list = list(seeds[:1]) if greedy else list(seeds)
    rows = [(s, i) for s in range(len(seed_list)) for i in range(len(prompts))]
    # similar lengths share a batch: less padding to run through the model
    rows.sort(key=lambda row: len(prompts[row[1]]))
    replies: list[list[str]] = [[""] * len(prompts) for _ in seed_list]
    with without_model_defaults(model), untouched(model), torch.no_grad():
        for lo in range(0, len(rows), batch_size):
            chunk = rows[lo : lo + batch_size]
            if greedy:
                config, processors = decoding_config(max_new_tokens, greedy=True, stop=stop, pad=pad), None
            else:
                config, processors = row_seeded_sampling(
                    max_new_tokens,
                    row_seeds=[row_seed(seed_list[s], i) for s, i in chunk],
                    stop=stop,
                    pad=pad,
                    temperature=temperature,
                    top_p=top_p,
                )
            texts = _generate_batch(model, tokenizer, [prompts[i] for _, i in chunk], config, processors, stop, pad)
            for (s, i), text in zip(chunk, texts, strict=True):
                replies[s][i] = text
    return replies


def _generate_batch(
    model, tokenizer, prompts: list[list[int]], config: GenerationConfig, processors, stop: list[int], pad: int
) -> list[str]:
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    out = model.generate(
        input_ids=input_ids, attention_mask=attention, generation_config=config, logits_processor=processors
    )
    responses = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop), len(row))
        responses.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return responses


# ---------------------------------------------------------------------- eval.jsonl records
def evaluate_model(
    model: PreTrainedModel,
    tokenizer,
    datasets: Mapping[str, Sequence],
    *,
    step: int,
    model_name: str,
    max_new_tokens: int = 64,
    greedy: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    seeds: int = 1,
    batch_size: int = 8,
    generation_batch_size: int = 64,
    max_prompt_length: int = 256,
    max_length: int | None = None,
    teacher=None,
    pad_id: int | None = None,
    keep_samples: int = 5,
) -> dict:
    """One eval.jsonl record under the protocol of ``adakd.evaluation.protocol``.

    Per dataset (a list of EvalPrompt, or of Examples = one reference each):
    ``rouge_l`` = mean over seeds of the mean over prompts of max-over-references ROUGE-L (×100),
    with ``rouge_l_spread`` (sample sd of the per-seed means) and ``rouge_l_seeds``; greedy
    decoding has one "seed". ``degenerate``: share of all generated replies that are empty or
    mostly repetition. With ``max_length``: ``ce`` (the model's cross-entropy on the references)
    and, when ``teacher`` is another model, ``kl_teacher`` (KL(teacher ‖ model) per token), see
    ``adakd.evaluation.reference_scores``. ``*_avg`` = unweighted means over datasets (as the paper averages
    its evaluation sets). Samples: the first ``keep_samples`` prompts under the first seed.
    ``generation_batch_size``: (seed, prompt) rows per generation batch (all seeds in one pass);
    ``batch_size``: (prompt, reference) pairs per forward pass of the reference scores.
    """
    from adakd.evaluation.protocol import is_degenerate, summarise_seeds
    from adakd.evaluation.reference_scores import reference_scores

    if not datasets or any(len(v) == 0 for v in datasets.values()):
        raise ValueError("evaluate_model needs at least one dataset, each with at least one example")
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1 (got {seeds})")
    started = time.perf_counter()
    seed_list = [seed] if greedy else [seed + i for i in range(seeds)]
    out: dict[str, dict] = {
        k: {} for k in ("rouge_l", "rouge_l_spread", "rouge_l_seeds", "degenerate", "n", "samples", "ce", "kl_teacher")
    }
    for name, prompts in datasets.items():
        per_seed, replies_all, first = [], [], None
        replies_by_seed = generate_for_seeds(
            model,
            tokenizer,
            prompts,
            seeds=seed_list,
            max_new_tokens=max_new_tokens,
            greedy=greedy,
            temperature=temperature,
            top_p=top_p,
            batch_size=generation_batch_size,
            max_prompt_length=max_prompt_length,
        )
        for replies in replies_by_seed:
            scores = [rouge_l(r, _references(p)) for r, p in zip(replies, prompts, strict=True)]
            per_seed.append(scores)
            replies_all += replies
            first = first or (replies, scores)
        if first is None:  # seed_list holds at least one seed (checked above)
            raise RuntimeError("no seed was evaluated")
        summary = summarise_seeds(per_seed)
        out["rouge_l"][name], out["rouge_l_spread"][name] = summary.mean, summary.spread
        out["rouge_l_seeds"][name] = list(summary.per_seed)
        out["degenerate"][name] = sum(map(is_degenerate, replies_all)) / len(replies_all)
        out["n"][name] = len(prompts)
        out["samples"][name] = [
            {
                "instruction": p.instruction,
                "reference": _references(p)[0],
                "references": list(_references(p)),
                "response": r,
                "rouge_l": sc,
                "degenerate": is_degenerate(r),
            }
            for p, r, sc in list(zip(prompts, *first, strict=True))[:keep_samples]
        ]
        if max_length is not None:
            pad = (
                pad_id
                if pad_id is not None
                else (tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_token_ids(tokenizer)[0])
            )
            scored = reference_scores(
                model,
                tokenizer,
                prompts,
                pad_id=pad,
                max_prompt_length=max_prompt_length,
                max_length=max_length,
                teacher=teacher,
                batch_size=batch_size,
            )
            out["ce"][name], out["kl_teacher"][name] = scored["ce"], scored["kl_teacher"]
    record = {
        "step": int(step),
        "model": model_name,
        **out,
        "rouge_l_avg": _mean(out["rouge_l"]),
        "rouge_l_spread_avg": _mean(out["rouge_l_spread"]),
        "degenerate_avg": _mean(out["degenerate"]),
        "ce_avg": _mean(out["ce"]),
        "kl_teacher_avg": _mean(out["kl_teacher"]),
        "decoding": {
            "greedy": bool(greedy),
            "temperature": temperature,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "seed": seed,
            "seeds": seed_list,
            # each reply from its own generator (adakd.evaluation.decoding.RowSeededGumbel); records before
            # this field sampled each seed's batches from the global generator
            "sampler": "greedy" if greedy else "row-seeded",
        },
        "seconds": round(time.perf_counter() - started, 3),
    }
    return record


def _references(prompt) -> tuple[str, ...]:
    return tuple(getattr(prompt, "references", None) or (prompt.response,))


def _mean(values: Mapping[str, float | None]) -> float | None:
    """Unweighted mean of the non-None values (None when there is none)."""
    kept = [v for v in values.values() if v is not None]
    return sum(kept) / len(kept) if kept else None


# ---------------------------------------------------------------------- python -m adakd eval RUN
def protocol_settings(config, pad_id: int) -> dict:
    """evaluate_model's keyword arguments for a run's config: decoding, seeds, lengths."""
    return {
        "max_new_tokens": config.eval_max_new_tokens,
        "generation_batch_size": config.eval_batch_size,
        "greedy": config.eval_greedy,
        "seed": config.eval_seed,
        "seeds": config.eval_seeds,
        "max_prompt_length": config.max_prompt_length,
        "max_length": config.max_length,
        "pad_id": pad_id,
    }


def evaluate_run(
    run_dir,
    data_files: Sequence[str] | None = None,
    examples: int | None = None,
    greedy: bool = False,
    overrides: Mapping | None = None,
) -> dict:
    """Score the student of a run's latest checkpoint and append the record to its eval.jsonl.

    The model, prompt length and decoding (eval_max_new_tokens, eval_seed, sampling unless
    ``greedy`` or the run's ``eval_greedy``) come from the run's config.json; the record's
    ``step`` is the checkpoint's step and ``model`` is "student". ``overrides``: config fields
    to change for this evaluation only (e.g. ``eval_seeds``). Returns the record.
    """
    from adakd.config import RunConfig
    from adakd.runs.rundir import EVAL, RunDir
    from adakd.runs.runlock import run_lock
    from adakd.training import checkpoint as ckpt
    from adakd.training.device import autocast, choose_device_and_dtype
    from adakd.training.runsetup import build_eval_sets, build_models, pad_token_id

    run = RunDir(run_dir)
    with run_lock(run.path, create=False):  # appends to eval.jsonl: one writer at a time
        meta = run.read_config()
        if not meta or "config" not in meta:
            raise ValueError(f"{run.path} has no readable config.json: not a run directory")
        config = RunConfig.from_record({**meta["config"], **(overrides or {})})
        ckpt.clean_leftovers(run.path)
        found = ckpt.latest_checkpoint(run.checkpoints)
        if found is None:
            raise ValueError(f"{run.path} has no complete checkpoint to evaluate yet")
        step, path = found
        datasets = build_eval_sets(config, data_files, examples)
        device, dtype, reason = choose_device_and_dtype(config)
        log.info("evaluating %s (checkpoint step %d) on %s: %s", run.path, step, device, reason)
        teacher, student, tokenizer = build_models(config, device)
        ckpt.load_checkpoint(path, student, device=device)
        settings = protocol_settings(config, pad_token_id(tokenizer))
        if greedy:
            settings["greedy"] = True
        with autocast(device, dtype):
            record = evaluate_model(
                student, tokenizer, datasets, step=step, model_name="student", teacher=teacher, **settings
            )
        run.append(EVAL, record)
        run.event(
            step,
            "eval",
            f"student ROUGE-L {record['rouge_l_avg']:.2f} on {', '.join(datasets)} (python -m adakd eval)",
            model="student",
            rouge_l_avg=record["rouge_l_avg"],
        )
    return record
