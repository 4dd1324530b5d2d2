"""The whole report: missing runs, the verdict, and build_report() that joins every section."""

from __future__ import annotations

import json
import math
from pathlib import Path

from analysis.figures import gradient_frame, histogram_frame
from analysis.report.competence_section import competence_section
from analysis.report.figures import build_figures, ema_lag
from analysis.report.gate_section import gate_section
from analysis.report.heldout_section import failing_metrics, heldout_section, paired_heldout
from analysis.report.markdown import compare, fmt, md_table
from analysis.report.numbers import group_medians, paired_ce_difference, paired_ce_se, probe_summary, ratio_summary
from analysis.report.settings import PAPER_TABLE2, REGENERATE, WINDOW
from analysis.report.setup_sections import noise_section, setup_section
from analysis.report.study import Study, component, differences_from_preset
from analysis.report.table1_section import table1_section
from analysis.report.table_sections import (
    c_section,
    loss_section,
    seed_spread_text,
    table2_section,
    table3_section,
    table4_section,
    table5_section,
)

# The studies of scripts/make_sample_runs.sh (sweep folder, planned runs, command), in its
# priority order.
PLANNED = [
    (
        "ablation",
        6,
        "bash scripts/make_sample_runs.sh ablation",
        "plain KD (base) and full AdaKD, seeds 0-2 (Table 2)",
    ),
    (
        "ablation-components",
        6,
        "bash scripts/make_sample_runs.sh components",
        "+LATF and +IDTS alone, seeds 0-2 (Table 2)",
    ),
    (
        "c-sweep",
        4,
        "bash scripts/make_sample_runs.sh c-sweep",
        "IDTS strength c = 0.1, 0.3, 0.7, 0.9 (Fig. 3c-d; c = 0.5 is ablation/full)",
    ),
    (
        "schedule-fixed",
        1,
        "bash scripts/make_sample_runs.sh schedules",
        "LATF replaced by a fixed r = 0.75 (Table 4, Fig. 3b)",
    ),
    (
        "schedule-cosine",
        1,
        "bash scripts/make_sample_runs.sh schedules",
        "LATF replaced by a cosine r 1.0 -> 0.75 (Table 4, Fig. 3b)",
    ),
    (
        "divergences",
        8,
        "bash scripts/make_sample_runs.sh divergences",
        "fkl, jsd, srkl, ab, each plain and with AdaKD (Table 1)",
    ),
    (
        "table1",
        4,
        "bash scripts/make_sample_runs.sh table1",
        "GKD and DistiLLM data regimes, plain and with AdaKD (rest of Table 1)",
    ),
    ("sft", 1, "bash scripts/make_sample_runs.sh sft", "SFT baseline (Tables 1-2), single seed"),
    (
        "table3",
        5,
        "bash scripts/make_sample_runs.sh table3",
        "difficulty indicators fkl, rkl, jsd, ce, top-k (Table 3), single seed",
    ),
    (
        "table4",
        3,
        "bash scripts/make_sample_runs.sh table4",
        "fixed r = 1.0, linear 1.0 -> 0.75, cosine 1.0 -> 0.5 (rest of Table 4), single seed",
    ),
    (
        "table5",
        6,
        "bash scripts/make_sample_runs.sh table5",
        "fixed τ 0.8 / 1.2 / e^-0.5, inverse IDTS, CTKD, logit standardisation (Table 5), single seed",
    ),
]


def missing_section(root: Path) -> str:
    rows = []
    for folder, planned, command, what in PLANNED:
        sweep = root / folder / "sweep.json"
        done = 0
        if sweep.is_file():
            try:
                runs = json.loads(sweep.read_text(encoding="utf-8")).get("runs", [])
                done = sum(1 for r in runs if r.get("state") == "finished")
            except (OSError, json.JSONDecodeError):
                done = 0
        if done < planned:
            rows.append([what, f"{done} / {planned}", f"`{command}`"])
    out = ["## Planned runs still missing", ""]
    if not rows:
        return "\n".join(out + ["None: every planned study has finished."])
    out.append(md_table(["study", "finished / planned", "command"], rows))
    out += [
        "",
        f"`{REGENERATE}` with no argument runs all of its studies in this order "
        "(its header gives the cost per run on an idle 2-core CPU).",
    ]
    return "\n".join(out)


def verdict_section(study: Study, threshold: float) -> str:
    out = ["## What reproduces, what does not", ""]
    items = []
    full, base = study.full, study.arm("base")
    latf = study.full if study.full is not None else study.arm("+LATF")
    if latf is not None:
        s = ratio_summary(latf)
        items.append(
            f"**LATF's controller works as specified**: the ratio falls while the "
            f"loss average falls (r {fmt(s['first'])} → {fmt(s['last'], 3)} over "
            f"{s['changes']} ratio changes in {latf.label}"
            + ("; it never rose)" if s["rises"] == 0 else f"; it rose {s['rises']} times)")
            + (". " + ema_lag(latf) if ema_lag(latf) else "")
            if s["last"] < s["first"]
            else f"LATF's ratio did not fall in {latf.label} (r {fmt(s['first'])} → {fmt(s['last'], 3)})"
        )
    if full is not None and not full.tokens.empty:
        med = group_medians(full)
        fell = [g for g, (a, b) in med.items() if b < a]
        items.append(
            "**Difficulty falls in every group** of the probe tokens (median, r = 0.5 "
            "split: "
            + ", ".join(f"{g} {fmt(x, 3)} → {fmt(y, 3)}" for g, (x, y) in med.items())
            + "), as in Fig. 1 (top)"
            if len(fell) == len(med) and med
            else f"Difficulty fell in the groups {', '.join(fell) or 'none'} only"
        )
        frame = histogram_frame(full)
        tau = frame[(frame["quantity"] == "tau") & (frame["column"] == "late")].groupby("group")["value"].mean()
        if "hard" in tau and "easy" in tau:
            items.append(
                "**IDTS assigns τ < 1 to hard and τ > 1 to easy tokens** (Fig. 4), by construction"
                if tau["hard"] < 1 < tau["easy"]
                else "IDTS temperatures do not split around 1 as expected"
            )
    if full is not None and not full.gradients.empty:
        grads = gradient_frame(full, "paper")
        easy = float(grads[grads["group"] == "easy"]["cos_sft"].mean())
        items.append(
            f"**The easy-token gradient conflict of Fig. 1 (bottom) reproduces** (mean cos with SFT {fmt(easy, 3)})"
            if easy < 0
            else "**The easy-token gradient conflict of Fig. 1 (bottom) does not reproduce**: "
            f"the easy group's cos with the SFT gradient averages {fmt(easy, 3)} > 0 "
            "(possibly because a student this far from its teacher still learns from "
            "every token)"
        )
    if full is not None and base is not None:
        d = study.mean_rouge("full (AdaKD)") - study.mean_rouge("base")  # Table 2's numbers
        items.append(
            f"**ROUGE-L gain of AdaKD over base: {fmt(d, signed=True)} points** "
            f"(paper: {fmt(PAPER_TABLE2['full (AdaKD)'] - PAPER_TABLE2['base'], signed=True)}); "
            + (
                "not a finding: the study fails the validity gate on ROUGE-L (a trained student "
                "already scores like the teacher), so it cannot rank methods here"
                if "rouge_l" in failing_metrics([r for r in study.ablation if component(r) == "base"])
                else "within our noise level, so neither a reproduction nor a refutation"
                if abs(d) < threshold
                else (
                    "same sign as the paper and above our noise level"
                    if d > 0
                    else "opposite sign to the paper and above our noise level"
                )
            )
        )
        heldout = [(arm, paired_heldout(study.ablation, arm, "ce")) for arm in ("+IDTS", "+LATF", "full (AdaKD)")]
        shown = [(arm, x) for arm, x in heldout if x is not None]
        if shown:
            items.append(
                "**Held-out CE** (the gate's metric that can rank here), each arm minus base of the "
                "same seed, 95 % t interval: "
                + ", ".join(
                    f"{arm} {fmt(m, 3, signed=True)} ± {fmt(h, 3)} over {n} seeds "
                    + ("(worse)" if m > h else "(better)" if m < -h else "(no difference shown)")
                    for arm, (m, h, n) in shown
                )
            )
        by_seed = {name: study.paired_ce_by_seed(name) for name in ("full (AdaKD)", "+LATF", "+IDTS")}
        if len(by_seed["full (AdaKD)"]) >= 2:
            text = (
                f"AdaKD's CE on the training labels, paired with the same seed's base over the "
                f"last {WINDOW} steps, changes by {seed_spread_text(by_seed['full (AdaKD)'])}"
            )
            if len(by_seed["+LATF"]) >= 2 and len(by_seed["+IDTS"]) >= 2:
                text += (
                    f"; +LATF alone by {seed_spread_text(by_seed['+LATF'])}, +IDTS alone by "
                    f"{seed_spread_text(by_seed['+IDTS'])}"
                )
            items.append(text)
        else:
            paired, se = paired_ce_difference(full, base), paired_ce_se(full, base)
            items.append(
                compare(
                    paired,
                    0.0,
                    f"AdaKD's CE on the training labels, paired with base over the last {WINDOW} steps,",
                    " nats",
                    3,
                )
                + f" (± {fmt(se, 3)} standard error over the steps; one seed, so whether "
                "this survives a change of seed is not known yet)"
            )
    params = _params(study)
    ref = study.full or study.runs[0]
    probe = probe_summary(ref)
    gap = probe.get("ce_student_last", math.nan) - probe.get("ce_teacher_last", math.nan)
    far = (
        f"; the student stays far from the teacher (probe CE {fmt(probe['ce_student_last'])} "
        f"vs the teacher's {fmt(probe['ce_teacher_last'])} nats), so effects that need a "
        "student close to its teacher cannot show"
        if gap > 1.0
        else ""
    )
    items += [
        f"Scale: a {params[0]:.0f} M teacher and a {params[1]:.0f} M student for "
        f"{ref.config.get('max_steps')} steps on `{ref.config.get('data')}` are far from the "
        f"paper's 7 B → 1.5 B on instruction data{far}. Differences from the paper are "
        "expected and are not evidence against it.",
        seeds_text(study),
    ]
    out += [f"- {item}." if not item.endswith(".") else f"- {item}" for item in items]
    return "\n".join(out)


def _params(study: Study) -> tuple[float, float, object]:
    """(teacher M parameters, student M parameters, CPU cores) of the reference run."""
    ref = study.full or (study.ablation[0] if study.ablation else study.runs[0])
    n = ref.meta.get("num_parameters", {})
    return (n.get("teacher", 0) / 1e6, n.get("student", 0) / 1e6, ref.meta.get("machine", {}).get("cpu_count"))


def seeds_text(study: Study) -> str:
    seeds = sorted({r.seed for r in study.ablation if r.seed is not None})
    if len(seeds) <= 1:
        return (
            "Seeds: one seed per arm so far; the seed spread of every table is unknown until "
            f"`{REGENERATE} ablation` has run."
        )
    return f"Seeds: the ablation has seeds {seeds}; ± in Table 2 is the standard deviation over them."


def shown_root(root: Path) -> str:
    """The runs root as the page names it: relative to the working directory (the repository, for
    scripts/make_results.py) when it lies inside it, with a trailing slash."""
    path = Path(root).resolve()
    try:
        path = path.relative_to(Path.cwd().resolve())
    except ValueError:
        pass
    return f"{path.as_posix()}/"


def build_report(
    study: Study,
    root: Path,
    exported: set[str] | None = None,
    figures: dict[str, tuple[object, str]] | None = None,
    figures_rel: str = "figures",
) -> str:
    """The whole docs/results.md. exported: figure names written as PNG (None: link all of
    `figures`); figures: build_figures(study) (None: built here)."""
    if not study.runs:
        return (
            "# Results: small-scale reproduction\n\nNo finished run under "
            f"`{root}` yet. Generate them with `{REGENERATE}`.\n"
        )
    noise_text, threshold = noise_section(study)
    figures = build_figures(study) if figures is None else figures
    fig_lines = ["## Figures", ""]
    for name, (_, reading) in figures.items():
        if exported is not None and name not in exported:
            fig_lines += [
                f"*{name}: not exported (no browser for Kaleido); run the script where Chromium is installed.*",
                "",
            ]
            continue
        fig_lines += [
            f"![{name}]({figures_rel}/{name}.png)",
            "",
            reading,
            f"([SVG]({figures_rel}/{name}.svg))" if exported is not None else "",
            "",
        ]
    params = _params(study)
    header = "\n\n".join(
        [
            "# Results: a small-scale reproduction of AdaKD",
            f"<!-- Generated by scripts/make_results.py from the finished runs under {shown_root(root)}. "
            "Do not edit by hand: change the script and re-run it. -->",
            f"This page reports the project's own measurements on the offline default pair, from "
            f"{len(study.runs)} finished runs in `{shown_root(root)}`, next to the paper's numbers "
            "(Xie et al., AAAI 2026). The paper distils Qwen2-7B into Qwen2-1.5B on instruction "
            f"data; ours is a {params[0]:.0f} M teacher and a {params[1]:.0f} M student on a "
            f"{params[2]}-core CPU, so this is a check that the mechanisms behave as described and a "
            "statement of what such a small study can and cannot show, not a reproduction of the "
            "paper's numbers.",
        ]
        + (
            [
                f"**This study is not in today's `demo` recipe**: it differs in {drift}. The study regime and "
                "why it changed: docs/study_regime.md."
            ]
            if (drift := differences_from_preset(study.runs[0]))
            else []
        )
    )
    sections = [
        header,
        gate_section(study),
        heldout_section(study),
        competence_section(study),
        setup_section(study),
        noise_text,
        table2_section(study, threshold),
        loss_section(study),
        c_section(study, threshold),
        table3_section(study),
        table4_section(study, threshold),
        table5_section(study),
        table1_section(study, threshold),
        "\n".join(fig_lines).rstrip(),
        verdict_section(study, threshold),
        missing_section(root),
    ]
    return "\n\n".join(s.rstrip() for s in sections if s.strip()) + "\n"
