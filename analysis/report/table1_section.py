"""The report's Table 1 section: base divergences and data regimes, plain and with AdaKD, with
readings of what each row can show (noise, failed runs, the data a regime actually used)."""

from __future__ import annotations

import math

import numpy as np

from adakd.divergences import resolve_params
from analysis.report.markdown import fmt, md_table
from analysis.report.numbers import final_replies, final_rouge
from analysis.report.settings import PAPER_TABLE1_RKL, REGENERATE
from analysis.report.study import Study, _cfg, component
from analysis.runs import Run, method_label


def table1_section(study: Study, threshold: float) -> str:
    runs = study.divergences
    out = ["## Table 1 shape: base divergences, plain and with AdaKD", ""]

    def base_of(run: Run) -> str:  # "rkl", "fkl", "GKD/jsd", "DistiLLM/srkl", ...
        return method_label({**run.config, "latf": "off", "idts": "off"})

    divs = list(dict.fromkeys(base_of(r) for r in runs))
    rows, deltas = [], {}
    for div in divs:
        cells, seeds = [], []
        for comp in ("base", "full (AdaKD)"):
            part = [r for r in runs if base_of(r) == div and component(r) == comp]
            cells.append(float(np.mean([final_rouge(r) for r in part])) if part else math.nan)
            seeds.append(str(len(part)))
        deltas[div] = cells[1] - cells[0]
        paper = PAPER_TABLE1_RKL if div == "rkl" else (math.nan, math.nan)
        rows.append(
            [
                div,
                fmt(cells[0]),
                fmt(cells[1]),
                fmt(deltas[div], signed=True),
                " / ".join(seeds),
                fmt(paper[0]),
                fmt(paper[1]),
                fmt(paper[1] - paper[0], signed=True),
            ]
        )
    if study.sft:  # the SFT baseline has no AdaKD variant
        rows.append(
            [
                "SFT",
                fmt(float(np.mean([final_rouge(r) for r in study.sft]))),
                "–",
                "–",
                f"{len(study.sft)} / –",
                "–",
                "–",
                "–",
            ]
        )
    out.append(
        md_table(
            [
                "method",
                "plain (ours)",
                "+ AdaKD (ours)",
                "Δ (ours)",
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
        "ROUGE-L of the final student, averaged over its seeds. The paper's per-method numbers "
        "other than reverse KL are not restated here (docs/method.md gives only that row).",
    ]
    beyond = [f"{d} ({fmt(v, signed=True)})" for d, v in deltas.items() if abs(v) >= threshold]
    within = [d for d, v in deltas.items() if abs(v) < threshold]
    if deltas:
        out += [
            "",
            "Reading: "
            + (
                f"Δ within the {fmt(threshold, 1)}-point noise level for {', '.join(within)}"
                if within
                else "no Δ is within the noise level"
            )
            + (f"; beyond it: {', '.join(beyond)}" if beyond else "")
            + ".",
        ]
    out += degenerate_replies_reading(runs, base_of)
    out += data_regime_reading(runs, base_of)
    missing = [d for d in ("fkl", "jsd", "srkl", "ab") if d not in divs]
    if missing:
        out += ["", f"Not yet run: {', '.join(missing)} (`{REGENERATE} divergences`)."]
    regimes = [m for m in ("GKD", "DistiLLM") if not any(d.startswith(m) for d in divs)]
    if regimes:
        out += ["", f"Not yet run: the {' and '.join(regimes)} data regime(s) (`{REGENERATE} table1`)."]
    return "\n".join(out)


def data_regime_reading(runs: list[Run], base_of) -> list[str]:
    """Which data each student-generated-data run actually trained on (metrics' data_source):
    a DistiLLM run whose adaptive probability never left 0 is its divergence on ground truth."""

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
        if regime == "distillm" and all(k == 0 for k, _ in counts):
            twins = [
                t
                for r in part
                for t in runs
                if _cfg(t, "regime", "ground_truth") == "ground_truth"
                and same_objective(r, t)
                and final_rouge(t) == final_rouge(r)
            ]
            text += (
                ". DistiLLM's student-data probability stayed 0: it rises only when the "
                "validation CE comes back above its reference, and a student that is still "
                f"learning keeps improving, so these runs are plain {_cfg(part[0], 'divergence')} "
                "on the data"
            )
            if len(twins) == len(part):
                text += " and score exactly as the " + " and ".join(t.label for t in twins) + " runs"
        lines.append(text)
    return ["", "Data regimes: " + "; ".join(lines) + "."] if lines else []


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
