"""Evaluation as the paper scores it: sampled responses, ROUGE-L F-measure ×100 (Porter stemmer).

- :func:`rouge_l`: ``rouge-score``'s ROUGE-L F-measure with stemming, ×100, max over references.
- :func:`generate_responses`: batched, left-padded, KV-cached generation; sampling (top-p 1.0,
  temperature 1.0 by default) from a fixed seed per call, greedy as an option. The global RNG
  is saved and restored, so evaluating never changes what training draws next.
- :func:`evaluate_model`: one ``eval.jsonl`` record (docs/contracts.md) for a model over named
  datasets of :class:`adakd.data.Example`.
- :func:`evaluate_run`: ``python -m adakd eval RUN [--data FILE ...]``: score a run's latest
  checkpoint on any Dolly/Alpaca-schema files (or the run's held-out split), append to eval.jsonl.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import GenerationConfig

from adakd.probes import untouched
from adakd.tokenize import encode_prompt

log = logging.getLogger(__name__)

STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # ChatML end of turn; GPT-2 style end of text


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


def _generation_config(max_new_tokens: int, greedy: bool, temperature: float, top_p: float,
                       stop: list[int], pad: int) -> GenerationConfig:
    """Every decoding knob explicit: a model's own generation_config (top_k = 50, repetition
    penalties, ...) must not silently change the protocol. top_k = 0 disables top-k."""
    sampling = {} if greedy else {"temperature": temperature, "top_p": top_p, "top_k": 0}
    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=not greedy, num_beams=1,
                            repetition_penalty=1.0, no_repeat_ngram_size=0, eos_token_id=stop,
                            pad_token_id=pad, use_cache=True, **sampling)


def _seed_generators(model: torch.nn.Module, seed: int) -> None:
    """Seed the generators sampling draws from: CPU and the model's own CUDA device (only)."""
    torch.random.default_generator.manual_seed(seed)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.default_generators[device.index or 0].manual_seed(seed)


def generate_responses(model: torch.nn.Module, tokenizer, examples: Sequence, *, max_new_tokens: int,
                       greedy: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
                       batch_size: int = 8, max_prompt_length: int = 256) -> list[str]:
    """Responses of ``model`` to each example's prompt, in order (decoded, special tokens
    removed, stripped; cut at the first stop token).

    Batches of ``batch_size`` prompts, left-padded so every row continues from its last prompt
    token, KV cache on. Sampling uses softmax(z/temperature) restricted to the top-p nucleus and
    nothing else; the generators are seeded with ``seed`` at the start of the call, so the same
    call gives the same responses; the global RNG states and the model's train/eval modes are
    restored afterwards.
    """
    if max_new_tokens < 1 or batch_size < 1 or max_prompt_length < 1:
        raise ValueError("max_new_tokens, batch_size and max_prompt_length must be >= 1")
    if not greedy and (temperature <= 0 or not 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and top_p in (0, 1] (got {temperature}, {top_p})")
    stop = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    config = _generation_config(max_new_tokens, greedy, temperature, top_p, stop, pad)
    # the exact prompt ids training used (shortened inside the template when too long)
    prompts = [encode_prompt(tokenizer, ex, max_prompt_length) for ex in examples]
    responses: list[str] = []
    # generate() fills every knob we leave unset from model.generation_config; a blank one
    # for the duration of the call keeps the decoding protocol exactly what `config` says.
    saved_defaults, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with untouched(model), torch.no_grad():
            _seed_generators(model, seed)
            responses = _generate_batches(model, tokenizer, prompts, config, batch_size, stop, pad)
    finally:
        model.generation_config = saved_defaults
    return responses


def _generate_batches(model, tokenizer, prompts: list[list[int]], config: GenerationConfig,
                      batch_size: int, stop: list[int], pad: int) -> list[str]:
    device = next(model.parameters()).device
    responses = []
    for lo in range(0, len(prompts), batch_size):
        chunk = prompts[lo:lo + batch_size]
        width = max(len(p) for p in chunk)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in chunk], device=device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
        out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
        for row in out[:, width:].tolist():
            cut = next((i for i, t in enumerate(row) if t in stop), len(row))
            responses.append(tokenizer.decode(row[:cut], skip_special_tokens=True).strip())
    return responses


# ---------------------------------------------------------------------- eval.jsonl records
def evaluate_model(model: torch.nn.Module, tokenizer, datasets: Mapping[str, Sequence], *, step: int,
                   model_name: str, max_new_tokens: int = 64, greedy: bool = False, temperature: float = 1.0,
                   top_p: float = 1.0, seed: int = 0, batch_size: int = 8, max_prompt_length: int = 256,
                   keep_samples: int = 5) -> dict:
    """One eval.jsonl record: mean ROUGE-L (×100) per dataset of the model's responses against
    each example's reference ``response``; ``rouge_l_avg`` = unweighted mean over datasets
    (as the paper averages its evaluation sets); the first ``keep_samples`` responses per dataset.
    Each dataset is generated with the same ``seed``, so adding a dataset does not change the others.
    """
    if not datasets or any(len(v) == 0 for v in datasets.values()):
        raise ValueError("evaluate_model needs at least one dataset, each with at least one example")
    started = time.perf_counter()
    scores, counts, samples = {}, {}, {}
    for name, examples in datasets.items():
        responses = generate_responses(model, tokenizer, examples, max_new_tokens=max_new_tokens,
                                       greedy=greedy, temperature=temperature, top_p=top_p, seed=seed,
                                       batch_size=batch_size, max_prompt_length=max_prompt_length)
        per_example = [rouge_l(r, [ex.response]) for r, ex in zip(responses, examples)]
        scores[name] = sum(per_example) / len(per_example)
        counts[name] = len(per_example)
        samples[name] = [{"instruction": ex.instruction, "reference": ex.response, "response": r,
                          "rouge_l": s} for ex, r, s in list(zip(examples, responses, per_example))[:keep_samples]]
    return {"step": int(step), "model": model_name, "rouge_l": scores,
            "rouge_l_avg": sum(scores.values()) / len(scores), "n": counts, "samples": samples,
            "decoding": {"greedy": bool(greedy), "temperature": temperature, "top_p": top_p,
                         "max_new_tokens": max_new_tokens, "seed": seed},
            "seconds": round(time.perf_counter() - started, 3)}


# ---------------------------------------------------------------------- python -m adakd eval RUN
def run_eval_sets(config, data_files: Sequence[str] | None, examples: int | None) -> dict[str, list]:
    """Datasets to score a run on: the given Dolly/Alpaca files (name = file stem), else the
    run's own evaluation sets exactly as training chose them (``config.eval_data``, or the
    held-out split of ``config.data``); ``examples`` per dataset (default ``config.eval_examples``),
    evenly spread over each file."""
    from adakd.data import load_examples, split_examples
    from adakd.runsetup import SPLIT_SEED, spread

    count = config.eval_examples if examples is None else int(examples)
    if count < 1:
        raise ValueError(f"examples must be >= 1 (got {count}); the run's eval_examples is "
                         f"{config.eval_examples}: pass --examples N")
    files = list(data_files or config.eval_data)
    if files:
        sets = {Path(f).stem: spread(load_examples(str(f)), count) for f in files}
    else:
        _, val, test = split_examples(load_examples(config.data), seed=SPLIT_SEED)
        sets = {"chatterbot" if config.data == "chatterbot" else Path(config.data).stem: spread(test or val, count)}
    empty = [name for name, exs in sets.items() if not exs]
    if empty:
        raise ValueError(f"no examples to evaluate in {', '.join(empty)}")
    return sets


def evaluate_run(run_dir, data_files: Sequence[str] | None = None, examples: int | None = None,
                 greedy: bool = False) -> dict:
    """Score the student of a run's latest checkpoint and append the record to its eval.jsonl.

    The model, prompt length and decoding (eval_max_new_tokens, eval_seed, sampling unless
    ``greedy`` or the run's ``eval_greedy``) come from the run's config.json; the record's
    ``step`` is the checkpoint's step and ``model`` is "student". Returns the record.
    """
    from adakd import checkpoint as ckpt
    from adakd.config import RunConfig
    from adakd.device import autocast, choose_device_and_dtype
    from adakd.rundir import EVAL, RunDir
    from adakd.runlock import run_lock
    from adakd.runsetup import build_models

    run = RunDir(run_dir)
    with run_lock(run.path, create=False):  # appends to eval.jsonl: one writer at a time
        meta = run.read_config()
        if not meta or "config" not in meta:
            raise ValueError(f"{run.path} has no readable config.json: not a run directory")
        config = RunConfig.from_dict(meta["config"])
        ckpt.clean_leftovers(run.path)
        found = ckpt.latest_checkpoint(run.checkpoints)
        if found is None:
            raise ValueError(f"{run.path} has no complete checkpoint to evaluate yet")
        step, path = found
        datasets = run_eval_sets(config, data_files, examples)
        device, dtype, reason = choose_device_and_dtype(config)
        log.info("evaluating %s (checkpoint step %d) on %s: %s", run.path, step, device, reason)
        teacher, student, tokenizer = build_models(config, device)
        del teacher
        ckpt.load_checkpoint(path, student, device=device)
        with autocast(device, dtype):
            record = evaluate_model(student, tokenizer, datasets, step=step, model_name="student",
                                    max_new_tokens=config.eval_max_new_tokens, greedy=greedy or config.eval_greedy,
                                    seed=config.eval_seed, max_prompt_length=config.max_prompt_length)
        run.append(EVAL, record)
        run.event(step, "eval", f"student ROUGE-L {record['rouge_l_avg']:.2f} on {', '.join(datasets)} "
                  f"(python -m adakd eval)", model="student", rouge_l_avg=record["rouge_l_avg"])
    return record
