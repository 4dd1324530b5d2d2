"""Results report: the validity gate, first of all sections (analysis/validity.py).

Whether the study shows a student learning from its teacher decides how every later table may be
read: a study that fails (or cannot be judged) says so here, before any comparison of methods.
"""

from __future__ import annotations

from analysis.report.markdown import md_table
from analysis.report.study import Study, component
from analysis.validity import gate_passed, study_gate

ARMS = ("base", "full (AdaKD)")


def gate_section(study: Study) -> str:
    """## Validity gate: per ablation arm (all its seeds), teacher ≻ final ≻ initial on ROUGE-L and
    held-out cross-entropy, each gap beyond twice the noise."""
    lines = ["## Validity gate: does the student learn from its teacher?", ""]
    rows, verdicts, failed = [], [], []
    for arm in ARMS:
        runs = [r for r in study.ablation if component(r) == arm]
        checks = study_gate(runs)
        if not checks:
            continue
        verdicts.append(gate_passed(checks))
        failed += [c for c in checks if not c.passed]
        for c in checks:
            rows.append(
                [
                    arm,
                    f"{len(runs)}",
                    c.metric,
                    f"{c.teacher:.2f}",
                    f"{c.initial:.2f}",
                    f"{c.final:.2f}",
                    f"{2 * c.spread:.2f}",
                    "passes" if c.passed else f"**fails**: {c.reason}",
                ]
            )
    if not rows:
        lines.append(
            "**Not measured.** These runs were made before the evaluation protocol (held-out "
            "cross-entropy, references of ≥ 11 words, 3 generation seeds), so nothing here shows "
            "that their students learn from the teacher: **read no table below as a finding "
            "about the methods.** Regenerate the study (`bash scripts/make_sample_runs.sh`) to "
            "measure it."
        )
        return "\n".join(lines)
    lines.append(md_table(["arm", "seeds", "metric", "teacher", "initial", "final (mean)", "2 × noise", "gate"], rows))
    lines.append("")
    if all(verdicts):
        lines.append("Both arms pass: the experiment works, so the comparisons below can be read against their noise.")
        return "\n".join(lines)
    lines.append(
        "**The study fails the gate**, so **the method comparisons below are not findings** on the metrics that fail."
    )
    if any(c.learned and not c.below_teacher for c in failed):
        lines += [
            "",
            'Where a trained student comes within the noise of the teacher ("teacher − final" '
            "above), the student did learn, but the metric can no longer tell the teacher from a "
            "trained student, so it cannot rank methods either: two arms that both reach the "
            "teacher's score look equal whatever their quality. Read the metrics that pass "
            "(held-out cross-entropy, and KL(teacher ‖ student) in the tables) instead.",
        ]
    if any(not c.learned for c in failed):
        lines += ["", 'Where "final − initial" fails, the student did not learn beyond the noise.']
    return "\n".join(lines)
