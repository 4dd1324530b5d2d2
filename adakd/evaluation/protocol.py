"""The evaluation protocol of MiniLLM / DistiLLM (which the AdaKD paper follows), as pure functions.

- Only references of at least ``MIN_REFERENCE_WORDS`` (11) words count, as in MiniLLM's and
  DistiLLM's test sets; a prompt with none left is not scored. Words are rouge-score's tokens
  (lower-cased alphanumeric runs), i.e. exactly what ROUGE-L compares.
- A prompt that occurs several times (chatterbot has many: "What is AI?" with four replies) is
  generated and scored **once**, against all of its references (ROUGE-L takes the best match).
- Sampled replies are scored for several generation seeds; the score of a model is the mean over
  prompts, averaged over seeds, and the spread over seeds is reported beside it.
- A reply is **degenerate** when it is empty or mostly repetition: at least half of its word
  trigrams repeat an earlier trigram of the same reply, or (8 words or more) fewer than 40 % of
  its words are distinct (``"The The The I can, a I can, a I, I, I"``: 4 of 12).

The functions here take strings and numbers only; generation and scoring with models are in
``adakd.evaluation.evaluate``.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

MIN_REFERENCE_WORDS = 11  # MiniLLM / DistiLLM: test samples whose reference has >= 11 words
DEGENERATE_REPEAT_SHARE = 0.5  # a reply with >= this share of repeated word trigrams is degenerate
DEGENERATE_DISTINCT_SHARE = 0.4  # ... or, with >= DISTINCT_MIN_WORDS words, < this share of distinct words
DISTINCT_MIN_WORDS = 8
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class EvalPrompt:
    """One prompt to generate for, with every reference it has (duplicates merged)."""

    instruction: str
    context: str
    references: tuple[str, ...]
    category: str = ""
    response: str = field(default="", compare=False)  # the first reference: Example-compatible

    @property
    def key(self) -> tuple[str, str]:
        return (self.instruction, self.context)


def words(text: str) -> list[str]:
    """rouge-score's tokens of ``text``: lower-cased runs of [a-z0-9] (before stemming)."""
    return _WORD.findall(text.lower())


def group_prompts(examples: Sequence) -> list[EvalPrompt]:
    """Merge examples with the same (instruction, context) into one EvalPrompt whose references are
    their responses, in first-seen order (repeated identical references kept once)."""
    order: list[tuple[str, str]] = []
    refs: dict[tuple[str, str], list[str]] = {}
    category: dict[tuple[str, str], str] = {}
    for ex in examples:
        key = (ex.instruction, ex.context)
        if key not in refs:
            order.append(key)
            refs[key] = []
            category[key] = getattr(ex, "category", "")
        if ex.response not in refs[key]:
            refs[key].append(ex.response)
    return [EvalPrompt(k[0], k[1], tuple(refs[k]), category[k], refs[k][0]) for k in order]


def keep_long_references(prompts: Sequence[EvalPrompt], min_words: int = MIN_REFERENCE_WORDS) -> list[EvalPrompt]:
    """Drop references shorter than ``min_words`` words; drop prompts left with none."""
    kept = []
    for p in prompts:
        long = tuple(r for r in p.references if len(words(r)) >= min_words)
        if long:
            kept.append(EvalPrompt(p.instruction, p.context, long, p.category, long[0]))
    return kept


def evaluation_prompts(examples: Sequence, count: int, min_words: int = MIN_REFERENCE_WORDS) -> list[EvalPrompt]:
    """The protocol's prompt set from held-out examples: grouped, long references only, then
    ``count`` prompts evenly spread over the result (the source order is by category)."""
    prompts = keep_long_references(group_prompts(examples), min_words)
    if count >= len(prompts):
        return prompts
    return [prompts[i * len(prompts) // count] for i in range(count)]


def repeated_trigram_share(text: str) -> float:
    """Share of the reply's word trigrams that repeat an earlier trigram (0 with < 3 words)."""
    w = words(text)
    grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def is_degenerate(text: str) -> bool:
    """Empty (no word at all), at least half repeated trigrams, or (>= 8 words) < 40 % distinct words."""
    w = words(text)
    if not w:
        return True
    few_distinct = len(w) >= DISTINCT_MIN_WORDS and len(set(w)) / len(w) < DEGENERATE_DISTINCT_SHARE
    return few_distinct or repeated_trigram_share(text) >= DEGENERATE_REPEAT_SHARE


@dataclass(frozen=True)
class SeedSummary:
    """A model's score over generation seeds: mean of the per-seed means and their spread."""

    mean: float
    spread: float  # sample standard deviation over seeds (0 with one seed)
    per_seed: tuple[float, ...]


def summarise_seeds(scores_by_seed: Sequence[Sequence[float]]) -> SeedSummary:
    """``scores_by_seed[s][i]``: prompt i's score under seed s → mean over prompts per seed, then
    the mean and sample standard deviation of those seed means."""
    if not scores_by_seed or any(len(s) == 0 for s in scores_by_seed):
        raise ValueError("summarise_seeds needs at least one seed with at least one score")
    per_seed = tuple(sum(s) / len(s) for s in scores_by_seed)
    spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    return SeedSummary(sum(per_seed) / len(per_seed), spread, per_seed)


# ---------------------------------------------------------------------- the validity gate
@dataclass(frozen=True)
class GateCheck:
    """One metric of the gate: is teacher > final > initial, each gap > 2 × spread?

    learned: final ≻ initial beyond the noise; below_teacher: teacher ≻ final beyond the noise
    (passed = both). A student that learned but is not below the teacher has reached the
    teacher's score: the metric can no longer rank trained students."""

    metric: str
    teacher: float
    initial: float
    final: float
    spread: float
    higher_is_better: bool
    passed: bool
    reason: str
    learned: bool = False
    below_teacher: bool = False


def gate_check(
    metric: str, teacher: float, initial: float, final: float, spread: float, higher_is_better: bool = True
) -> GateCheck:
    """teacher ≻ final ≻ initial on ``metric`` with each gap > 2·spread (≻: better in the metric's
    direction). ``spread``: the noise the gaps must clear (seed standard deviation; 0 = any
    strictly positive gap). Non-finite inputs fail."""
    values = (teacher, initial, final, spread)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        return GateCheck(
            metric,
            teacher,
            initial,
            final,
            spread,
            higher_is_better,
            False,
            "not measured (missing or non-finite values)",
        )
    sign = 1.0 if higher_is_better else -1.0
    top_gap, learn_gap = sign * (teacher - final), sign * (final - initial)
    margin = 2.0 * max(spread, 0.0)
    problems = []
    if not learn_gap > margin:
        problems.append(f"final − initial {sign * learn_gap:+.2f} is not beyond 2×spread {margin:.2f}")
    if not top_gap > margin:
        problems.append(f"teacher − final {sign * top_gap:+.2f} is not beyond 2×spread {margin:.2f}")
    reason = (
        "; ".join(problems)
        if problems
        else (f"teacher {teacher:.2f} ≻ final {final:.2f} ≻ initial {initial:.2f}, gaps > 2×spread {margin:.2f}")
    )
    learned, below_teacher = learn_gap > margin, top_gap > margin
    return GateCheck(
        metric, teacher, initial, final, spread, higher_is_better, not problems, reason, learned, below_teacher
    )


def gate_passed(checks: Sequence[GateCheck]) -> bool:
    """The experiment is valid only when every check passes (and there is at least one)."""
    return bool(checks) and all(c.passed for c in checks)


# ---------------------------------------------------------------------- the CLI's summary table
def _cell(value, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def summary_table(records: Sequence[dict]) -> str:
    """A fixed-width table of eval.jsonl records, one row per (record, dataset):
    model, step, dataset, prompts, ROUGE-L ± seed sd, degenerate share, CE, KL(teacher ‖ model)."""
    header = (
        f"{'model':<13} {'step':>6}  {'dataset':<18} {'prompts':>7}  {'ROUGE-L':>15}  {'degenerate':>10}  "
        f"{'CE':>6}  {'KL(T‖m)':>7}"
    )
    lines = [header, "-" * len(header)]
    for r in records:
        for name, score in (r.get("rouge_l") or {}).items():
            spread = (r.get("rouge_l_spread") or {}).get(name)
            rouge = _cell(score, ".2f") + ("" if spread is None else f" ± {spread:.2f}")
            degenerate = (r.get("degenerate") or {}).get(name)
            lines.append(
                f"{r.get('model', '?'):<13} {r.get('step', '?'):>6}  {name[:18]:<18} "
                f"{(r.get('n') or {}).get(name, '–'):>7}  {rouge:>15}  "
                f"{_cell(None if degenerate is None else 100 * degenerate, '.1f') + ' %':>10}  "
                f"{_cell((r.get('ce') or {}).get(name), '.3f'):>6}  "
                f"{_cell((r.get('kl_teacher') or {}).get(name), '.3f'):>7}"
            )
    lines.append(
        "ROUGE-L: F×100, best over each prompt's long references, mean over generation seeds "
        "(± their sample sd); degenerate: empty or mostly repeated replies; CE, KL: nats per reference token."
    )
    return "\n".join(lines)
