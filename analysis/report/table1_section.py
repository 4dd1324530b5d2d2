"""The report's Table 1 section: base divergences and data regimes, plain and with AdaKD, with
readings of what each row can show (noise, failed runs, the data a regime actually used)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from adakd.method.divergences import resolve_params
from analysis.report.heldout_section import failing_metrics, paired_interval
from analysis.report.markdown import fmt, md_table, seeds_text
from analysis.report.numbers import final_replies, final_rouge, grouped_by_side, nan_mean
from analysis.report.settings import PAPER_TABLE1_RKL, REGENERATE
from analysis.report.study import Study, _cfg, component
from analysis.runs import Run, method_label
from analysis.validity import final_average


def table1_section(study: Study, threshold: float) -> str:
    runs = study.divergences
    out = ["## Table 1 shape: base divergences, plain and with AdaKD", ""]

    def base_of(run: Run) -> str:  # "rkl", "fkl", "GKD/jsd", "DistiLLM/srkl", ...
        return method_label({**run.config, "latf": "off", "idts": "off"})

    divs = list(dict.fromkeys(base_of(r) for r in runs))
    arms = {
        (div, comp): [r for r in runs if base_of(r) == div and component(r) == comp]
        for div in divs
        for comp in ("base", "full (AdaKD)")
    }
    rouge = {key: nan_mean([final_rouge(r) for r in part]) for key, part in arms.items()}
    ce = {key: _heldout_ce(part) for key, part in arms.items()}
    kl = {key: _heldout(part, "kl_teacher") for key, part in arms.items()}
    rows, deltas = [], {}
    for div in divs:
        plain, ada = (div, "base"), (div, "full (AdaKD)")
        deltas[div] = rouge[ada] - rouge[plain]
        paper = PAPER_TABLE1_RKL if div == "rkl" else (math.nan, math.nan)
        rows.append(
            [
                div,
                fmt(rouge[plain]),
                fmt(rouge[ada]),
                fmt(deltas[div], signed=True),
                fmt(nan_mean(ce[plain]), 3),
                fmt(nan_mean(ce[ada]), 3),
                fmt(nan_mean(ce[ada]) - nan_mean(ce[plain]), 3, signed=True),
                fmt(nan_mean(kl[plain]), 3),
                fmt(nan_mean(kl[ada]), 3),
                f"{len(arms[plain])} / {len(arms[ada])}",
                fmt(paper[0]),
                fmt(paper[1]),
                fmt(paper[1] - paper[0], signed=True),
            ]
        )
    if study.sft:  # the SFT baseline has no AdaKD variant
        sft_ce = fmt(nan_mean(_heldout_ce(study.sft)), 3)
        sft_kl = fmt(nan_mean(_heldout(study.sft, "kl_teacher")), 3)
        rows.append(
            ["SFT", fmt(nan_mean([final_rouge(r) for r in study.sft])), "–", "–", sft_ce, "–", "–", sft_kl, "–"]
            + [f"{len(study.sft)} / –", "–", "–", "–"]
        )
    out.append(
        md_table(
            [
                "method",
                "ROUGE-L plain",
                "ROUGE-L + AdaKD",
                "Δ ROUGE-L",
                "held-out CE plain",
                "held-out CE + AdaKD",
                "Δ CE",
                "held-out KL plain",
                "held-out KL + AdaKD",
                "seeds (plain / AdaKD)",
                "plain (paper)",
                "+ AdaKD (paper)",
                "Δ (paper)",
            ],
            rows,
        )
    )
    out += [
        "",
        "ROUGE-L, held-out CE and held-out KL(teacher ‖ student) (nats, lower is better) of the "
        "final student, each averaged over its seeds. The paper's columns are ROUGE-L; its "
        "per-method numbers other than reverse KL are not restated here (docs/method.md gives only that row).",
    ]
    if deltas:
        unranked = "rouge_l" in failing_metrics([r for r in study.ablation if component(r) == "base"])
        beyond = [f"{d} ({fmt(v, signed=True)})" for d, v in deltas.items() if abs(v) >= threshold]
        within = [d for d, v in deltas.items() if abs(v) < threshold]
        out += [
            "",
            "Reading, ROUGE-L: "
            + (
                "not a finding whatever its size, the study fails the validity gate on ROUGE-L "
                "(a trained student already scores like the teacher). "
                if unranked
                else ""
            )
            + (
                f"Δ within the {fmt(threshold, 1)}-point noise level for {', '.join(within)}"
                if within
                else "no Δ is within the noise level"
            )
            + (f"; beyond it: {', '.join(beyond)}" if beyond else "")
            + ".",
        ]
    # a method whose runs score exactly as another's (a DistiLLM run whose φ never moved is its
    # divergence on the data) would count twice in the readings across methods
    ground_first = sorted(divs, key=lambda d: "/" in d)  # "DistiLLM/srkl" is the twin of "srkl", not the reverse
    twin_of = {
        d: e
        for i, d in enumerate(ground_first)
        for e in ground_first[:i]
        if all(rouge[(d, c)] == rouge[(e, c)] and ce[(d, c)] == ce[(e, c)] for c in ("base", "full (AdaKD)"))
    }
    distinct = [d for d in divs if d not in twin_of]
    if twin_of:
        out += [
            "",
            "The readings below leave out "
            + ", ".join(f"{d}, whose runs score exactly as {e}'s" for d, e in twin_of.items())
            + " (see the data regimes), so that no result counts twice.",
        ]
    out += ce_delta_reading(distinct, arms)
    if deltas:
        out += method_order_reading(
            {d: rouge[(d, "base")] for d in distinct},
            {d: nan_mean(ce[(d, "base")]) for d in distinct},
            threshold,
            unranked,
            seeds={d: len(arms[(d, "base")]) for d in distinct},
        )
    out += sft_reading(distinct, arms, study.sft)
    out += degenerate_replies_reading(runs, base_of)
    out += data_regime_reading(runs, base_of)
    missing = [d for d in ("fkl", "jsd", "srkl", "ab") if d not in divs]
    if missing:
        out += ["", f"Not yet run: {', '.join(missing)} (`{REGENERATE} divergences`)."]
    regimes = [m for m in ("GKD", "DistiLLM") if not any(d.startswith(m) for d in divs)]
    if regimes:
        out += ["", f"Not yet run: the {' and '.join(regimes)} data regime(s) (`{REGENERATE} table1`)."]
    return "\n".join(out)


def _heldout_ce(runs: list[Run]) -> list[float]:
    """The final students' held-out CE, one per run that has it."""
    return _heldout(runs, "ce")


def _heldout(runs: list[Run], column: str) -> list[float]:
    """The final students' held-out ``column`` (eval.jsonl), one per run that has it."""
    return [v for r in runs if not math.isnan(v := final_average(r, "student", column))]


def method_order_reading(
    rouge: dict[str, float], ce: dict[str, float], threshold: float, unranked: bool, seeds: dict[str, int] | None = None
) -> list[str]:
    """The plain arms of the methods against each other: the ROUGE-L range (against the noise
    level ``threshold``), the held-out CE order, and whether the two metrics order the methods
    alike: Spearman's ρ between ROUGE-L and −CE (1 = the same order, −1 = reversed; undefined
    when one metric ties across every method). ``seeds``: plain-arm seeds per method, for the
    caveat. [] below three methods with both numbers."""
    both = [d for d in rouge if not math.isnan(rouge[d]) and not math.isnan(ce[d])]
    if len(both) < 3:
        return []
    r = pd.Series({d: rouge[d] for d in both})
    c = pd.Series({d: ce[d] for d in both})
    rho = float(r.rank().corr((-c).rank()))
    spread = float(r.max() - r.min())
    by_rouge = ", ".join(f"{d} {fmt(r[d])}" for d in r.sort_values(ascending=False, kind="stable").index)
    by_ce = ", ".join(f"{d} {fmt(c[d], 3)}" for d in c.sort_values(kind="stable").index)
    single = sum(1 for d in both if (seeds or {}).get(d, 1) < 2)
    seed_note = (
        "every method with a single seed"
        if single == len(both)
        else f"{single} of the {len(both)} methods with a single seed"
        if single
        else "every method with several seeds"
    )
    rho_text = (
        "undefined (one of the metrics is equal for every method)"
        if math.isnan(rho)
        else f"{fmt(rho)} (1: the same order, −1: reversed; over {len(both)} methods, {seed_note}, a lead at most)"
    )
    rouge_status = (
        "not a finding (the gate fails on ROUGE-L)"
        if unranked
        else f"{'within' if spread < threshold else 'beyond'} the {fmt(threshold, 1)}-point noise level"
    )
    return [
        "",
        f"Reading, the methods' plain arms against each other: ROUGE-L, best first: {by_rouge} "
        f"(a range of {fmt(spread)} points, {rouge_status}); held-out CE, best first: {by_ce}. "
        f"Spearman's ρ between ROUGE-L and −CE over the {len(both)} methods is {rho_text}. "
        "Held-out CE is measured on the reference replies, which rewards covering their mass; "
        "ROUGE-L scores the student's own replies.",
    ]


def sft_reading(divs: list[str], arms: dict[tuple[str, str], list[Run]], sft: list[Run]) -> list[str]:
    """Each method's plain arm against the SFT baseline on held-out CE and KL: the question of
    Table 1's first row, whether distilling from the teacher beats training on the references.
    Differences of means are read against 2·s·√(1/n + 1/n_SFT), s the largest std over seeds of
    that metric among the arms with two or more seeds; [] without SFT or any such spread."""
    if not sft:
        return []
    lines = []
    for column, label in (("ce", "Held-out CE"), ("kl_teacher", "Held-out KL")):
        values = {key: _heldout(part, column) for key, part in arms.items()}
        spreads = [float(np.std(v, ddof=1)) for v in values.values() if len(v) >= 2]
        alone = _heldout(sft, column)
        if not spreads or not alone:
            continue
        s = max(spreads)
        readings = []
        for div in divs:
            plain = values[(div, "base")]
            if not plain:
                continue
            d = float(np.mean(plain)) - float(np.mean(alone))
            limit = 2 * s * math.sqrt(1 / len(plain) + 1 / len(alone))
            readings.append((d, limit, f"{div} {fmt(d, 3, signed=True)} (noise {fmt(limit, 3)})"))
        parts = grouped_by_side(
            readings,
            lower="plain KD below SFT beyond noise:",
            within="within noise of SFT:",
            higher="plain KD above SFT beyond noise (SFT better):",
        )
        lines.append(
            f"{label} against SFT ({fmt(float(np.mean(alone)), 3)}, {seeds_text(len(alone))}; s = {fmt(s, 3)}): "
            + "; ".join(parts)
        )
    if not lines:
        return []
    return [
        "",
        "Reading, against the SFT baseline (plain KD − SFT, lower is better for KD): "
        + " ".join(f"{x}." for x in lines),
    ]


def ce_delta_reading(divs: list[str], arms: dict[tuple[str, str], list[Run]]) -> list[str]:
    """Each method's Δ held-out CE (AdaKD − plain, means over seeds). A method with two or more
    seeds in both arms is read as the component ablation is (heldout_section): differences
    paired by training seed, with their 95 % t interval. The others (one seed an arm) against a
    noise limit 2·s·√(1/n_plain + 1/n_AdaKD), s the largest std over seeds of any arm with two
    or more seeds. [] when no arm has several seeds (no spread to read against)."""
    ce = {key: _heldout_ce(part) for key, part in arms.items()}
    spreads = {key: float(np.std(v, ddof=1)) for key, v in ce.items() if len(v) >= 2}
    if not spreads:
        return []
    s_key = max(spreads, key=lambda k: spreads[k])
    s = spreads[s_key]
    readings = []
    for div in divs:
        plain, ada = arms[(div, "base")], arms[(div, "full (AdaKD)")]
        by_seed = {r.seed: final_average(r, "student", "ce") for r in plain}
        paired = [final_average(r, "student", "ce") - by_seed[r.seed] for r in ada if r.seed in by_seed]
        interval = paired_interval([d for d in paired if not math.isnan(d)])
        if interval is not None:
            d, limit = interval
            noise = f"paired by seed, 95 % interval ± {fmt(limit, 3)}"
        elif ce[(div, "base")] and ce[(div, "full (AdaKD)")]:
            d = float(np.mean(ce[(div, "full (AdaKD)")])) - float(np.mean(ce[(div, "base")]))
            limit = 2 * s * math.sqrt(1 / len(ce[(div, "base")]) + 1 / len(ce[(div, "full (AdaKD)")]))
            noise = f"noise {fmt(limit, 3)}"
        else:
            continue
        readings.append((d, limit, f"{div} {fmt(d, 3, signed=True)} ({noise})"))
    parts = grouped_by_side(
        readings,
        lower="AdaKD lowers it beyond noise for",
        within="within noise for",
        higher="AdaKD raises it beyond noise for",
    )
    signs = [
        float(np.mean(ce[(d, "full (AdaKD)")])) - float(np.mean(ce[(d, "base")]))
        for d in divs
        if ce[(d, "full (AdaKD)")] and ce[(d, "base")]  # a method with an arm lacking CE has no sign
    ]
    if len(signs) >= 3:  # one direction across methods says more than each single-seed row
        parts.append(
            f"AdaKD's held-out CE is above plain's for {sum(x > 0 for x in signs)} of the {len(signs)} methods"
        )
    return [
        "",
        "Reading, held-out CE: methods with several seeds per arm are paired by seed; the others "
        f"are read against the noise limit 2·s·√(1/n + 1/n) with s = {fmt(s, 3)}, the std over "
        f"the {len(ce[s_key])} seeds of {s_key[0]} {'plain' if s_key[1] == 'base' else '+ AdaKD'} "
        "(the largest of the arms with several seeds); "
        + "; ".join(parts)
        + ". A row with one seed per arm reads a single training seed: a difference beyond noise "
        "there is a lead to re-run with more seeds, not a finding.",
    ]


def data_regime_reading(runs: list[Run], base_of) -> list[str]:
    """Which data each student-generated-data run actually trained on (metrics' data_source),
    and for DistiLLM where its adaptive probability φ went: a DistiLLM run whose φ never left 0
    is its divergence on ground truth (said so, and checked against the ground-truth twin)."""

    def same_objective(a: Run, b: Run) -> bool:
        name = _cfg(a, "divergence")
        return (
            name == _cfg(b, "divergence")
            and component(a) == component(b)
            and resolve_params(name, _cfg(a, "divergence_params") or {})
            == resolve_params(name, _cfg(b, "divergence_params") or {})
        )

    lines = []
    for regime, title in (("gkd", "GKD"), ("distillm", "DistiLLM")):
        part = [r for r in runs if _cfg(r, "regime") == regime and "data_source" in r.metrics]
        if not part:
            continue
        counts = [
            (int((r.metrics["data_source"] == "student").sum()), int(r.metrics["data_source"].notna().sum()))
            for r in part
        ]
        text = (
            f"{title}: "
            + ", ".join(f"{r.label} {k} of {n}" for r, (k, n) in zip(part, counts, strict=True))
            + " logged steps trained on student-generated replies"
        )
        if regime == "distillm":
            idle = [r for r, (k, _) in zip(part, counts, strict=True) if k == 0 and _phi_rise(r) is None]
            for run in part:
                rise = _phi_rise(run)
                if rise is not None:
                    trace = _validation_text(run)
                    text += f". {run.label}: φ rose to {fmt(rise[1])}, first logged at step {rise[0]}" + (
                        f" ({trace})" if trace else ""
                    )
            if idle:
                twins = [
                    t
                    for r in idle
                    for t in runs
                    if _cfg(t, "regime", "ground_truth") == "ground_truth"
                    and same_objective(r, t)
                    and final_rouge(t) == final_rouge(r)
                    and _same(final_average(t, "student", "ce"), final_average(r, "student", "ce"))
                ]
                text += (
                    f". {' and '.join(r.label for r in idle)}: φ stayed 0 (DistiLLM raises it only "
                    "when the validation CE comes back at least ε above its reference, and a student that is "
                    "still learning keeps improving"
                    + "".join(
                        f"; {r.label}: {t}" if len(idle) > 1 else f": {t}" for r in idle if (t := _validation_text(r))
                    )
                    + f"), so {'this run is' if len(idle) == 1 else 'these runs are'} "
                    f"plain {_cfg(idle[0], 'divergence')} on the data"
                )
                if len(twins) == len(idle):
                    text += (
                        f" and score{'s' * (len(idle) == 1)} exactly as the "
                        + " and ".join(t.label for t in twins)
                        + f" run{'s' * (len(twins) > 1)}"
                    )
        lines.append(text)
    return ["", "Data regimes: " + "; ".join(lines) + "."] if lines else []


def _same(a: float, b: float) -> bool:
    """Equal, or both missing (a run evaluated before the held-out protocol has no CE)."""
    return a == b or (math.isnan(a) and math.isnan(b))


def _validation_text(run: Run) -> str:
    """'validation CE 4.623 at step 0, then 4.500 / 4.124 / … at steps 50 / 100 / …, against
    the rise threshold 4.723 (first value + ε)' from the run's validation events: the numbers
    DistiLLM's φ rule reads (docs/method.md §8), so a reader sees why φ moved or did not. The
    reference is the first value until φ rises (it moves only with a rise). '' without events."""
    events = run.events
    if events.empty or "loss" not in events:
        return ""
    trace = events[events["kind"] == "validation"][["step", "loss"]].dropna()
    trace = trace[np.isfinite(trace["loss"].astype(float))]  # the φ rule skips non-finite values too
    if len(trace) < 2:
        return ""
    steps, losses = trace["step"].astype(int).tolist(), trace["loss"].astype(float).tolist()
    eps = float(_cfg(run, "distillm_threshold", 0.1))
    return (
        f"validation CE {fmt(losses[0], 3)} at step {steps[0]}, then "
        + " / ".join(fmt(v, 3) for v in losses[1:])
        + f" at step{'s' if len(steps) > 2 else ''} {' / '.join(map(str, steps[1:]))}, against the first "
        f"rise threshold {fmt(losses[0] + eps, 3)} = step-{steps[0]} value + ε {eps:g}"
    )


def _phi_rise(run: Run) -> tuple[int, float] | None:
    """(first step, highest value) of DistiLLM's student-data probability φ when it ever left 0."""
    if "student_data_prob" not in run.metrics:
        return None
    phi = run.metrics[["step", "student_data_prob"]].dropna()
    raised = phi[phi["student_data_prob"] > 0]
    if raised.empty:
        return None
    return int(raised["step"].iloc[0]), float(raised["student_data_prob"].max())


def degenerate_replies_reading(runs: list[Run], base_of) -> list[str]:
    """Readings for arms whose final student mostly replies with nothing: a ROUGE-L difference
    against an empty reply measures that failure, not the distillation method."""
    lines = []
    for run in runs:
        replies = final_replies(run)
        empty = sum(not r.strip() for r in replies)
        if replies and empty * 2 >= len(replies):
            others = [r for r in runs if base_of(r) == base_of(run) and r is not run]
            shown = [f"{component(o)}: “{_clip(next((x for x in final_replies(o) if x.strip()), ''))}”" for o in others]
            lines.append(
                f"{base_of(run)}, {component(run)}: {empty} of the {len(replies)} stored final "
                f"replies are empty (its first token is the end token), so its ROUGE-L of "
                f"{fmt(final_rouge(run))} measures that failure"
                + (f"; the other arm's first non-empty stored reply reads {'; '.join(shown)}" if shown else "")
                + ". The Δ of this row compares a failed run with another, not the two methods."
            )
    return ["", "Reading: " + " ".join(lines)] if lines else []


def _clip(text: str, most: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 1] + "…"
