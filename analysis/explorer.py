"""Token explorer: how AdaKD would treat every response token of a custom prompt.

    result = explore_prompt(teacher, student, tokenizer, "Name three colours.", ratio=0.5, c=0.5)
    result.tokens        # one row per response token: difficulty, group, τ, entropies, divergences
    result.topk          # each model's top-k next tokens per response token
    explorer_tokens_figure(result)          # tokens as a coloured strip, hover = all details
    topk_figure(result, token_index=3)      # teacher vs student top-k bars for one token

    scored = score_reply(teacher, student, tokenizer, "Name three colours.")  # the forward passes
    apply_settings(scored, ratio=0.3, c=1.0)  # another r and c in milliseconds, no model needed

The response is the given reference or, without one, the teacher's greedy reply (at most
``max_new_tokens``). Both models score the same token sequence in one forward pass each; every
per-token number follows docs/method.md and the run-time probes (``adakd.training.probes``) exactly:
difficulty = Hellinger at τ = 1, groups = ``adakd.training.probes.group_labels`` at ratio r (hard = top
r/2, mid = next r/2, easy = rest), ``tau`` = IDTS over the selected tokens (NaN elsewhere),
``tau_all`` = IDTS with the median of all response tokens, ``entropy_student_idts`` =
H(softmax(z_S / tau_all)). The student may be at initialisation or any checkpoint of a run:
see :func:`analysis.run_student.load_student_checkpoint`. That function and the figures of
:mod:`analysis.explorer_figures` are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from adakd.data.instructions import Example
from adakd.data.tokenize import encode_example, encode_prompt, format_prompt
from adakd.evaluation.decoding import decoding_config, without_model_defaults
from adakd.evaluation.evaluate import stop_token_ids
from adakd.method.difficulty import hellinger
from adakd.method.divergences import DIVERGENCES, divergence_from_log_probs, log_probs
from adakd.method.idts import idts_temperatures
from adakd.training.probes import group_labels, untouched
from analysis.explorer_figures import INDICATORS  # the alternatives of adakd.token_difficulty shown

MAX_PROMPT_TOKENS = 1024  # explorer bound on the formatted prompt (also capped by the model context)
MAX_RESPONSE_TOKENS = 512  # bound on the scored reply: memory is ~2·N·V float32 logits (200 MB at V = 49k)
DIVERGENCE_NAMES = tuple(DIVERGENCES)  # fkl, rkl, jsd, tvd, sfkl, srkl, ab, akl
TOKEN_COLUMNS = (
    "token_index",
    "position",
    "token_id",
    "token_text",
    "difficulty",
    *INDICATORS,
    "selected",
    "group",
    "tau",
    "tau_all",
    "hard",
    "entropy_student",
    "entropy_student_idts",
    "entropy_teacher",
    *(f"div_{name}" for name in DIVERGENCE_NAMES),
    "p_label_teacher",
    "p_label_student",
    "top1_teacher",
    "top1_student",
)
TOPK_COLUMNS = ("token_index", "model", "rank", "token_id", "token_text", "prob", "is_label")


@dataclass(frozen=True)
class ExplorerResult:
    """Output of :func:`explore_prompt` (frames described in the module docstring)."""

    tokens: pd.DataFrame
    topk: pd.DataFrame
    response: str
    response_source: str  # "reference" | "teacher_greedy"
    prompt_text: str
    prompt_ids: list[int] = field(repr=False)
    response_ids: list[int] = field(repr=False)
    ratio: float = 0.5
    c: float = 0.5
    base_temperature: float = 1.0


@dataclass(frozen=True)
class ScoredReply:
    """The part of exploring a prompt that r, c and τ₀ do not change (:func:`score_reply`).

    ``columns`` holds every per-token column of ``TOKEN_COLUMNS`` except the settings' columns
    (selected, group, tau, tau_all, hard, entropy_student_idts); ``student_logits`` ``[N, V]``
    float32 on the CPU stays for entropy_student_idts = H(softmax(z_S / τ_all)), which depends
    on c. :func:`apply_settings` turns it into an :class:`ExplorerResult` in milliseconds.
    """

    columns: dict[str, np.ndarray] = field(repr=False)
    student_logits: torch.Tensor = field(repr=False)
    topk: pd.DataFrame
    response: str
    response_source: str
    prompt_text: str
    prompt_ids: list[int] = field(repr=False)
    response_ids: list[int] = field(repr=False)


def explore_prompt(
    teacher,
    student,
    tokenizer,
    prompt: str,
    reference: str | None = None,
    *,
    ratio: float = 0.5,
    c: float = 0.5,
    base_temperature: float = 1.0,
    top_k: int = 5,
    max_new_tokens: int = 64,
    context: str = "",
    reply_ids: list[int] | None = None,
) -> ExplorerResult:
    """Score every response token of ``prompt`` under teacher and student (no gradient).

    The prompt is formatted as in training (``adakd.data.tokenize.format_prompt`` of an
    ``Example(instruction=prompt, context=context, response=reference)``). Without a reference
    the response is the teacher's greedy reply; pass ``reply_ids`` (from :func:`teacher_reply`
    or an earlier result's ``response_ids``) to score that reply again without regenerating it.
    Equal to ``apply_settings(score_reply(...), ratio=…, c=…, base_temperature=…)``: keep the
    :class:`ScoredReply` to re-apply other r or c without any forward pass. Raises ValueError
    for an empty prompt, bad r/c/τ/top_k, a prompt past ``min(MAX_PROMPT_TOKENS, model
    context)``, or both a reference and reply ids. The models' train/eval modes and the RNG
    state are left as they were.
    """
    _check_settings(ratio, c, base_temperature)
    scored = score_reply(
        teacher,
        student,
        tokenizer,
        prompt,
        reference,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        context=context,
        reply_ids=reply_ids,
    )
    return apply_settings(scored, ratio=ratio, c=c, base_temperature=base_temperature)


def score_reply(
    teacher,
    student,
    tokenizer,
    prompt: str,
    reference: str | None = None,
    *,
    top_k: int = 5,
    max_new_tokens: int = 64,
    context: str = "",
    reply_ids: list[int] | None = None,
) -> ScoredReply:
    """The forward passes and every r/c-independent column of :func:`explore_prompt`."""
    _check_prompt(prompt, max_new_tokens)
    if not (isinstance(top_k, int) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer (got {top_k!r})")
    _check_text("the reference reply", reference or "")
    has_reference = bool(reference and reference.strip())
    if has_reference and reply_ids is not None:
        raise ValueError("give either a reference reply or the teacher's reply ids, not both")
    example = _example(prompt, (reference or "") if has_reference else "", context)
    context_length = _pair_context_length(teacher, student)
    with untouched(teacher, student), torch.no_grad():
        if has_reference:
            prompt_ids, response_ids = reference_ids(tokenizer, example, context_length)
        else:
            prompt_ids = checked_prompt_ids(tokenizer, example, context_length)
            if reply_ids is None:
                response_ids = _greedy_reply(teacher, tokenizer, prompt_ids, max_new_tokens, context_length)
            else:
                response_ids = _checked_reply(reply_ids, len(prompt_ids), context_length)
        ids = prompt_ids + response_ids
        t_logits = response_logits(teacher, ids, len(response_ids))
        s_logits = response_logits(student, ids, len(response_ids)).to(t_logits.device)
        labels = torch.tensor(response_ids, device=t_logits.device)
        columns = reply_statistics(s_logits, t_logits, labels)
        topk = topk_table(s_logits, t_logits, labels, top_k)
    n = len(response_ids)
    columns.update(
        token_index=np.arange(n),
        position=np.arange(len(prompt_ids), len(ids)),
        token_id=np.asarray(response_ids, dtype=np.int64),
        token_text=decode_each(tokenizer, response_ids),
        top1_teacher=decode_each(tokenizer, columns["top1_teacher"]),
        top1_student=decode_each(tokenizer, columns["top1_student"]),
    )
    topk["token_text"] = decode_each(tokenizer, topk["token_id"])
    return ScoredReply(
        columns=columns,
        student_logits=s_logits.cpu(),
        topk=pd.DataFrame({name: topk[name] for name in TOPK_COLUMNS}),
        response=tokenizer.decode(response_ids, skip_special_tokens=True),
        response_source="reference" if has_reference else "teacher_greedy",
        prompt_text=format_prompt(tokenizer, example),
        prompt_ids=list(prompt_ids),
        response_ids=list(response_ids),
    )


def apply_settings(scored: ScoredReply, *, ratio: float, c: float, base_temperature: float = 1.0) -> ExplorerResult:
    """The :class:`ExplorerResult` of a scored reply at LATF ratio r, IDTS strength c and base
    temperature τ₀: groups, τ and the entropy at τ_all (:func:`settings_columns`), no forward pass."""
    _check_settings(ratio, c, base_temperature)
    difficulty = torch.from_numpy(scored.columns["difficulty"]).float()
    table = {
        **scored.columns,
        **settings_columns(difficulty, scored.student_logits, ratio=ratio, c=c, base_temperature=base_temperature),
    }
    return ExplorerResult(
        tokens=pd.DataFrame({name: table[name] for name in TOKEN_COLUMNS}),
        topk=scored.topk.copy(),
        response=scored.response,
        response_source=scored.response_source,
        prompt_text=scored.prompt_text,
        prompt_ids=list(scored.prompt_ids),
        response_ids=list(scored.response_ids),
        ratio=float(ratio),
        c=float(c),
        base_temperature=float(base_temperature),
    )


def teacher_reply(
    teacher, student, tokenizer, prompt: str, *, max_new_tokens: int = 64, context: str = ""
) -> list[int]:
    """The teacher's greedy reply ids to ``prompt``, as :func:`explore_prompt` generates it
    (checked the same way; ``student`` only bounds the context). The slow part of exploring a
    prompt without a reference: keep it and pass it back as ``reply_ids``."""
    _check_prompt(prompt, max_new_tokens)
    context_length = _pair_context_length(teacher, student)
    prompt_ids = checked_prompt_ids(tokenizer, _example(prompt, "", context), context_length)
    with untouched(teacher, student), torch.no_grad():
        return _greedy_reply(teacher, tokenizer, prompt_ids, max_new_tokens, context_length)


def _example(prompt: str, response: str, context: str) -> Example:
    return Example(instruction=prompt, context=context or "", response=response, category="explorer")


def _pair_context_length(teacher, student) -> int:
    return min(_context_length(teacher), _context_length(student))


def _greedy_reply(teacher, tokenizer, prompt_ids: list[int], max_new_tokens: int, context_length: int):
    return greedy_response_ids(teacher, tokenizer, prompt_ids, min(max_new_tokens, context_length - len(prompt_ids)))


def _checked_reply(reply_ids, n_prompt: int, context_length: int) -> list[int]:
    reply = [int(i) for i in reply_ids]
    if not reply:
        raise ValueError("reply_ids is empty: there is no response token to score")
    if n_prompt + len(reply) > context_length:
        raise ValueError(
            f"prompt + reply are {n_prompt + len(reply)} tokens, over the models' context of {context_length}"
        )
    return reply


def _check_settings(ratio, c, base_temperature) -> None:
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio r must be in (0, 1] (got {ratio})")
    if not c >= 0:
        raise ValueError(f"IDTS strength c must be >= 0 (got {c})")
    if not base_temperature > 0:
        raise ValueError(f"base temperature must be > 0 (got {base_temperature})")


def _check_prompt(prompt, max_new_tokens) -> None:
    """What generating a reply needs: a non-empty prompt and a reply budget in bounds."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: type an instruction or question")
    _check_text("the prompt", prompt)
    if not (isinstance(max_new_tokens, int) and 1 <= max_new_tokens <= MAX_RESPONSE_TOKENS):
        raise ValueError(f"max_new_tokens must be an integer in [1, {MAX_RESPONSE_TOKENS}] (got {max_new_tokens!r})")


def _check_text(what: str, text: str) -> None:
    """Tokenizers refuse strings that are not valid Unicode (lone surrogates, e.g. from bytes
    decoded with errors="surrogateescape") with an obscure TypeError: say what is wrong."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise ValueError(
            f"{what} is not valid Unicode text (character {err.start} is a lone surrogate "
            f"{text[err.start]!r}): paste it again as UTF-8 text"
        ) from None


def checked_prompt_ids(tokenizer, example: Example, context_length: int) -> list[int]:
    """The formatted prompt's ids exactly as training encodes them (``encode_prompt``, never
    shortened here); ValueError past ``min(MAX_PROMPT_TOKENS, context_length − 1)``."""
    ids = encode_prompt(tokenizer, example, max_prompt_length=1 << 30)
    limit = min(MAX_PROMPT_TOKENS, context_length - 1)
    if len(ids) > limit:
        raise ValueError(
            f"the prompt is {len(ids)} tokens after formatting; the explorer takes at most "
            f"{limit} (bound {MAX_PROMPT_TOKENS}, model context {context_length}). "
            "Shorten the prompt or its context."
        )
    return ids


def reference_ids(tokenizer, example: Example, context_length: int) -> tuple[list[int], list[int]]:
    """(prompt ids, response ids incl. the end token) as ``encode_example`` builds a training
    example; ValueError when prompt + reference exceed the model's context."""
    prompt_ids = checked_prompt_ids(tokenizer, example, context_length)
    encoded = encode_example(tokenizer, example, max_prompt_length=1 << 30, max_length=1 << 30)
    n_response = len(encoded["input_ids"]) - encoded["prompt_length"]
    if n_response > MAX_RESPONSE_TOKENS:
        raise ValueError(
            f"the reference is {n_response} tokens (with the end token); the explorer scores "
            f"at most {MAX_RESPONSE_TOKENS}. Shorten the reference."
        )
    if len(encoded["input_ids"]) > context_length:
        raise ValueError(
            f"prompt + reference are {len(encoded['input_ids'])} tokens, over the model's "
            f"context of {context_length}; shorten the reference."
        )
    if encoded["input_ids"][: encoded["prompt_length"]] != prompt_ids:  # both come from encode_prompt
        raise RuntimeError("adakd.data.tokenize.encode_example and encode_prompt disagree on the prompt ids")
    return prompt_ids, encoded["input_ids"][encoded["prompt_length"] :]


def greedy_response_ids(model, tokenizer, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """The model's greedy continuation, up to and including the first stop token (as training
    labels include the end token), at most ``max_new_tokens``. Every decoding knob is explicit
    so the model's own generation_config (sampling, penalties) cannot change the reply."""
    if max_new_tokens < 1:
        raise ValueError("the prompt fills the model's context: no room for a response")
    stop = stop_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop[0]
    config = decoding_config(max_new_tokens, greedy=True, stop=stop, pad=pad)
    input_ids = torch.tensor([prompt_ids], device=_device(model))
    with without_model_defaults(model):
        out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), generation_config=config)
    new = out[0, len(prompt_ids) :].tolist()
    cut = next((i + 1 for i, t in enumerate(new) if t in stop), len(new))
    return new[:cut]


def decode_each(tokenizer, ids) -> np.ndarray:
    """Readable text of each single token id (special tokens kept), as the probes decode them."""
    ids = [int(i) for i in ids]
    texts = {i: tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in set(ids)}
    return np.array([texts[i] for i in ids], dtype=object)


def _context_length(model) -> int:
    """The model's context window (max_position_embeddings / n_positions), or a large number."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 1 << 30


def _device(model) -> torch.device:
    return next(model.parameters()).device


def response_logits(model, ids: list[int], n_response: int) -> torch.Tensor:
    """Float32 logits ``[N, V]`` that score the last N = ``n_response`` tokens of ``ids``.

    Position t predicts token t+1, so the rows are positions T−N−1 … T−2. Only N+1 positions
    go through the LM head (``logits_to_keep``), which skips the [P, V] prompt logits.
    """
    input_ids = torch.tensor([ids], device=_device(model))
    try:
        logits = model(input_ids=input_ids, logits_to_keep=n_response + 1).logits
    except TypeError:  # a model class without logits_to_keep
        logits = model(input_ids=input_ids).logits
    return logits[0, -(n_response + 1) : -1].float()


def token_table(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ratio: float,
    c: float,
    base_temperature: float,
    chunk_rows: int = 128,
) -> dict[str, np.ndarray]:
    """Per-token columns from logits ``[N, V]`` and the response token ids ``[N]`` (no gradient):
    :func:`reply_statistics` and :func:`settings_columns` together."""
    table = reply_statistics(student_logits, teacher_logits, labels, chunk_rows=chunk_rows)
    difficulty = torch.from_numpy(table["difficulty"]).float()
    settings = settings_columns(difficulty, student_logits, ratio=ratio, c=c, base_temperature=base_temperature)
    return {**table, **settings}


def reply_statistics(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *, chunk_rows: int = 128
) -> dict[str, np.ndarray]:
    """The columns that r, c and τ₀ do not change, from logits ``[N, V]`` and labels ``[N]``.

    With q = softmax(z_S), p = softmax(z_T), all at τ = 1:
      difficulty = Hellinger(p, q) (``adakd.hellinger``, as training computes it);
      fkl = KL(p‖q), rkl = KL(q‖p), jsd = symmetric JS (λ = ½), ce = −log q(label),
        entropy = H(q): the alternative indicators of ``adakd.token_difficulty``;
      entropy_student = H(q), entropy_teacher = H(p), in nats; div_<name> =
        ``adakd.divergence(name)`` with its default parameters;
      p_label_* = p(label), q(label); top1_* = argmax ids (decoded by the caller).
    The vocabulary-wide statistics share one log-softmax per model and run over ``chunk_rows``
    rows at a time, so only a few ``[chunk_rows, V]`` temporaries exist at once.
    """
    with torch.no_grad():
        out = {"difficulty": hellinger(student_logits, teacher_logits).float()}
        chunks = [
            _row_statistics(
                student_logits[lo : lo + chunk_rows], teacher_logits[lo : lo + chunk_rows], labels[lo : lo + chunk_rows]
            )
            for lo in range(0, labels.numel(), chunk_rows)
        ]
        for key in chunks[0] if chunks else ():
            out[key] = torch.cat([chunk[key] for chunk in chunks])
    return _numpy(out)


def settings_columns(
    difficulty: torch.Tensor,
    student_logits: torch.Tensor,
    *,
    ratio: float,
    c: float,
    base_temperature: float,
    chunk_rows: int = 128,
) -> dict[str, np.ndarray]:
    """The columns that depend on r, c and τ₀, from difficulty ``[N]`` and z_S ``[N, V]``:
    selected/group at ``ratio`` (``adakd.training.probes.group_labels``); tau = IDTS over the selected
    (NaN elsewhere); tau_all = IDTS over all tokens; hard = difficulty > lower median;
    entropy_student_idts = H(softmax(z_S / tau_all)) in nats."""
    with torch.no_grad():
        difficulty = difficulty.to(student_logits.device)
        selected, groups = group_labels(difficulty, ratio)
        tau = torch.full_like(difficulty, float("nan"))
        tau[selected] = idts_temperatures(difficulty[selected], base_temperature, c).float()
        tau_all = idts_temperatures(difficulty, base_temperature, c).float()
        entropy = []
        for lo in range(0, difficulty.numel(), chunk_rows):
            logq = log_probs(student_logits[lo : lo + chunk_rows], tau_all[lo : lo + chunk_rows])
            entropy.append(-(logq.exp() * logq).sum(-1))
        out = {
            "selected": selected,
            "tau": tau,
            "tau_all": tau_all,
            "hard": difficulty > difficulty.median(),
            "entropy_student_idts": torch.cat(entropy) if entropy else torch.zeros(0),
        }
    arrays = _numpy(out)
    arrays["group"] = groups
    return arrays


def _numpy(columns: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """CPU numpy arrays, floats as float64 (the frames' dtype)."""
    arrays = {k: v.cpu().numpy() for k, v in columns.items()}
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in arrays.items()}


def _row_statistics(s: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The vocabulary-wide columns of :func:`reply_statistics` for a chunk of rows ``[n, V]``."""
    logq, logp = log_probs(s), log_probs(t)  # float32, −inf floored: finite everywhere
    out = {f"div_{name}": divergence_from_log_probs(name, logq, logp) for name in DIVERGENCE_NAMES}
    # Same formulas as adakd.token_difficulty's alternatives (tests compare the two).
    out["fkl"], out["rkl"] = out["div_fkl"], out["div_rkl"]
    out["jsd"] = divergence_from_log_probs("jsd", logq, logp, lam=0.5)
    label_logq = logq.gather(-1, labels[:, None]).squeeze(-1)
    out["ce"] = -label_logq
    out["entropy_student"] = -(logq.exp() * logq).sum(-1)
    out["entropy"] = out["entropy_student"]
    out["entropy_teacher"] = -(logp.exp() * logp).sum(-1)
    out["p_label_student"] = label_logq.exp()
    out["p_label_teacher"] = logp.gather(-1, labels[:, None]).squeeze(-1).exp()
    out["top1_student"], out["top1_teacher"] = s.argmax(-1), t.argmax(-1)
    return out


def topk_table(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, k: int
) -> dict[str, np.ndarray]:
    """Long-format top-k rows: token_index, model, rank 1..k, token_id, prob, is_label.

    prob = exp(z_v − logsumexp(z)), the softmax probability, for the k largest logits."""
    n, vocab = student_logits.shape
    k = min(k, vocab)
    parts: dict[str, list[np.ndarray]] = {
        c: [] for c in ("token_index", "model", "rank", "token_id", "prob", "is_label")
    }
    with torch.no_grad():
        for who, z in (("teacher", teacher_logits), ("student", student_logits)):
            top, ids = z.topk(k, dim=-1)
            probs = (top - torch.logsumexp(z, dim=-1, keepdim=True)).exp()
            parts["token_index"].append(np.repeat(np.arange(n), k))
            parts["model"].append(np.full(n * k, who, dtype=object))
            parts["rank"].append(np.tile(np.arange(1, k + 1), n))
            parts["token_id"].append(ids.reshape(-1).cpu().numpy())
            parts["prob"].append(probs.reshape(-1).cpu().numpy().astype(np.float64))
            parts["is_label"].append((ids == labels[:, None]).reshape(-1).cpu().numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


from analysis.explorer_figures import (  # noqa: E402,F401
    COLOR_LABELS,
    COLOR_OPTIONS,
    explorer_tokens_figure,
    topk_figure,
)
from analysis.run_student import load_student_checkpoint, run_checkpoints  # noqa: E402,F401
