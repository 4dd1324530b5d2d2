"""analysis.report and scripts/make_results.py: the tables and markdown of docs/results.md on
hand-made runs.

Runs come from tests/rundir_factory.py with known scores and losses; every expected number
below is computed by hand from what the factory writes (its documented generators), not
from the script. No PNG export here (that needs a browser; analysis/export.py has its tests).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis import report
from analysis import runs as R
from tests.rundir_factory import make_run, write_json
from tests.script_loader import load_script

STEPS = 40  # WINDOW = 20: "first" = steps 1-20, "last" = steps 21-40

BASE = {"latf": "off", "idts": "off"}
IDTS = {"latf": "off", "idts": "on"}
LATF = {"latf": "adaptive", "idts": "off"}
FULL = {"latf": "adaptive", "idts": "on"}
REFS = {"teacher": {"chatterbot": 20.0}, "student_init": {"chatterbot": 1.0}}


def _final_eval(ce: float, kl: float | None = None) -> dict:
    """The final student's eval.jsonl record on one set (chatterbot, 100 prompts, ROUGE-L 10):
    held-out CE ``ce`` and, when given, KL(teacher ‖ student) ``kl``."""
    record = {
        "step": STEPS,
        "model": "student",
        "rouge_l": {"chatterbot": 10.0},
        "rouge_l_avg": 10.0,
        "ce": {"chatterbot": ce},
        "ce_avg": ce,
        "n": {"chatterbot": 100},
    }
    if kl is not None:
        record |= {"kl_teacher": {"chatterbot": kl}, "kl_teacher_avg": kl}
    return record


@pytest.fixture(scope="module")
def script():
    return load_script("make_results.py")


@pytest.fixture()
def root(tmp_path):
    """sample_runs-like root: a finished ablation (seed 0), one c-sweep point, forward KL
    plain and with AdaKD, a fixed-r run, and one running run that must be ignored."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    arms = {"base": (BASE, 10.0, 1.0), "idts": (IDTS, 12.5, 0.9), "latf": (LATF, 9.0, 1.1), "full": (FULL, 14.0, 0.5)}
    for name, (config, rouge, scale) in arms.items():
        make_run(
            root / "ablation",
            f"ablation={name},seed=0",
            config={**config, "seed": 0},
            steps=STEPS,
            probe_steps=[0, 20, 40],
            final_rouge={"chatterbot": rouge},
            reference_rouge=REFS,
            loss_scale=scale,
        )
    write_json(
        root / "ablation" / "sweep.json",
        {
            "format": 1,
            "grid": {},
            "runs": [{"name": f"ablation={n},seed=0", "overrides": {}, "state": "finished"} for n in arms],
        },
    )
    make_run(
        root / "c-sweep",
        "idts_c=0.3,seed=0",
        config={**FULL, "idts_c": 0.3, "seed": 0},
        steps=STEPS,
        probe_steps=[0, 20, 40],
        final_rouge={"chatterbot": 11.0},
    )
    for name, config, rouge in (("base", BASE, 8.0), ("full", FULL, 9.5)):
        make_run(
            root / "divergences",
            f"divergence=fkl,ablation={name}",
            config={**config, "divergence": "fkl"},
            steps=STEPS,
            final_rouge={"chatterbot": rouge},
        )
    make_run(
        root / "schedule-fixed",
        "latf=fixed",
        config={"latf": "fixed", "idts": "on", "ratio_start": 0.75, "seed": 0},
        steps=STEPS,
        final_rouge={"chatterbot": 13.0},
        loss_scale=0.8,
    )
    make_run(
        root / "c-sweep",
        "idts_c=0.9,seed=0",
        config={**FULL, "idts_c": 0.9, "seed": 0},
        steps=STEPS,
        state="running",
        final_rouge={"chatterbot": 99.0},
    )
    write_json(
        root / "c-sweep" / "sweep.json",
        {
            "format": 1,
            "grid": {},
            "runs": [
                {"name": "idts_c=0.3,seed=0", "overrides": {}, "state": "finished"},
                {"name": "idts_c=0.9,seed=0", "overrides": {}, "state": "running"},
            ],
        },
    )
    yield root
    R.clear_cache()


def kd(step: int, scale: float) -> float:
    """The factory's generated KD loss: scale·3/(1 + 0.1·step); CE = KD + 0.5."""
    return scale * 3.0 / (1.0 + 0.1 * step)


def test_report_tables_have_the_runs_numbers(script, root, tmp_path):
    out = tmp_path / "docs" / "results.md"
    assert script.main(["--root", str(root), "--out", str(out), "--no-figures"]) == 0
    text = out.read_text(encoding="utf-8")

    # 8 finished runs; the running c = 0.9 run (ROUGE-L 99) is left out everywhere
    assert "from 8 finished runs" in text
    assert "99.00" not in text

    # Table 2: ours next to the paper's (37.03 / 38.55 / 37.07 / 39.01)
    assert "| base | rkl | 10.00 | 1 | +0.00 | 37.03 | +0.00 |" in text
    assert "| +IDTS | rkl + IDTS | 12.50 | 1 | +2.50 | 38.55 | +1.52 |" in text
    assert "| +LATF | rkl + LATF | 9.00 | 1 | -1.00 | 37.07 | +0.04 |" in text
    assert "| full (AdaKD) | rkl + AdaKD | 14.00 | 1 | +4.00 | 39.01 | +1.98 |" in text
    assert "| teacher |  | 20.00 | 1 |" in text and "| student (init) |  | 1.00 | 1 |" in text

    # one stored sample per record: noise unknown, 2-point rule; readings against it
    assert "sampling noise is unknown" in text
    assert "+IDTS +2.50 (above)" in text and "+LATF -1.00 (within noise)" in text
    assert "full (AdaKD) +4.00 (above)" in text

    # Table 1 shape: reverse KL plain 10 -> AdaKD 14 next to the paper's 31.70 -> 32.97
    assert "| rkl | 10.00 | 14.00 | +4.00 | – | – | – | – | – | 1 / 1 | 31.70 | 32.97 | +1.27 |" in text
    assert "| fkl | 8.00 | 9.50 | +1.50 | – | – | – | – | – | 1 / 1 | – | – | – |" in text
    assert "Not yet run: jsd, srkl, ab" in text
    # the forward-KL runs stay out of the reverse-KL ablation
    assert "| base | rkl | 10.00 | 1 | +0.00 |" in text and "fkl + AdaKD | 9.50" not in text

    # Fig. 3c-d table: c = 0.3 (11.00) and c = 0.5 (the ablation's full run, 14.00)
    first_ce = lambda s: np.mean([kd(t, s) + 0.5 for t in range(21, 41)])  # noqa: E731
    # (no protocol evaluation in these runs: no held-out CE or KL to show)
    assert f"| 0.3 | 11.00 | 1 | – | – | {first_ce(1.0):.3f} |" in text
    assert f"| 0.5 | 14.00 | 1 | – | – | {first_ce(0.5):.3f} |" in text
    assert "Not yet run: c = 0.1, 0.7, 0.9" in text

    # Table 4 shape: fixed r = 0.75 against LATF (the full run), CE paired step by step:
    # (0.8 − 0.5)·3/(1 + 0.1t) over t = 21..40
    diff = np.array([kd(t, 0.8) - kd(t, 0.5) for t in range(21, 41)])
    assert (f"| fixed (r 0.75 → 0.75) | rkl + fixed r=0.75 + IDTS | 13.00 | 1 | – | – | {first_ce(0.8):.3f} |") in text
    assert f"| {diff.mean():+.3f} ± {diff.std(ddof=1) / math.sqrt(20):.3f} |" in text
    assert "the ROUGE-L range over the schedules is 1.00 points, within the 2.0-point" in text

    # missing studies: the ablation is complete, the c sweep has 1 of 4
    assert "| component ablation, seed 0 (Table 2) |" not in text
    assert "| 1 / 4 | `bash scripts/make_sample_runs.sh c-sweep` |" in text
    assert "| 0 / 6 | `bash scripts/make_sample_runs.sh components` |" in text


def test_loss_table_numbers(root, tmp_path):
    study = report.Study(report.collect_runs(root))
    text = report.build_report(study, root, exported=set())

    def mean_kd(steps, scale):
        return float(np.mean([kd(t, scale) for t in steps]))

    first, last = range(1, 21), range(21, 41)
    # full arm: KD first/last, CE = KD + 0.5, paired ΔCE vs base = mean((0.5 − 1)·3/(1+0.1t))
    paired = mean_kd(last, 0.5) - mean_kd(last, 1.0)
    steps_diff = np.array([kd(t, 0.5) - kd(t, 1.0) for t in last])
    paired_se = float(np.std(steps_diff, ddof=1) / math.sqrt(len(steps_diff)))
    # probe difficulty u·exp(−step/20), u ~ U(0.05, 0.95) seeded by the config seed (0)
    u = np.random.default_rng(0).uniform(0.05, 0.95, size=16)
    difficulty = f"{u.mean():.3f} → {u.mean() * math.exp(-2.0):.3f}"
    # probe CE: −log(0.6·(1 − s)) averaged over the tokens
    ce0 = float(np.mean(-np.log(0.6 * (1 - u))))
    ce40 = float(np.mean(-np.log(0.6 * (1 - u * math.exp(-2.0)))))
    row = (
        f"| full (AdaKD) | 0 | {mean_kd(first, 0.5):.3f} | {mean_kd(last, 0.5):.3f} | "
        f"{mean_kd(first, 0.5) + 0.5:.3f} | {mean_kd(last, 0.5) + 0.5:.3f} | "
        f"{paired:+.3f} ± {paired_se:.3f} | "
        f"{difficulty} | {ce0:.2f} → {ce40:.2f} |"
    )
    assert row in text
    assert f"| base | 0 | {mean_kd(first, 1.0):.3f} | {mean_kd(last, 1.0):.3f} |" in text
    assert f"lower by {abs(paired):.3f} nats" in text
    # the teacher's probe CE: −log 0.6
    assert f"The teacher's probe CE is {-math.log(0.6):.2f} nats." in text
    # no figures exported: every figure says so instead of a broken link
    assert "![" not in text and "not exported" in text


def test_no_runs_gives_a_short_page(tmp_path):
    text = report.build_report(report.Study([]), tmp_path)
    assert "No finished run" in text and "bash scripts/make_sample_runs.sh" in text


def test_sample_noise_pools_the_stored_per_prompt_scores(tmp_path):
    R.clear_cache()
    runs = []
    for name, scores in (("a", [2.0, 4.0, 6.0]), ("b", [10.0, 12.0])):
        record = {
            "step": 10,
            "model": "student",
            "rouge_l": {"chatterbot": 5.0},
            "rouge_l_avg": 5.0,
            "n": {"chatterbot": 24},
            "samples": {
                "chatterbot": [{"instruction": "q", "reference": "r", "response": "x", "rouge_l": v} for v in scores]
            },
        }
        runs.append(R.load_run(make_run(tmp_path, name, evals=[record], tokens=False, gradients=False)))
    noise = report.sample_noise(runs)
    # residuals around each record's mean: −2, 0, 2 and −1, 1 -> Σ r² = 10 over 5 − 2 dof
    sd = math.sqrt(10 / 3)
    assert noise["sd"] == pytest.approx(sd)
    assert noise["se"] == pytest.approx(sd / math.sqrt(24))
    assert noise["se_diff"] == pytest.approx(math.sqrt(2) * sd / math.sqrt(24))
    assert (noise["samples"], noise["records"], noise["n"]) == (5, 2, 24)


def test_table1_names_an_arm_whose_replies_are_empty(tmp_path):
    """A plain arm that replies with nothing gets a reading: its Δ is a failure, not a method."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    for name, config, responses in (("base", BASE, ["", " ", "", "x"]), ("full", FULL, ["the a the", "", "b", "c"])):
        record = {
            "step": STEPS,
            "model": "student",
            "rouge_l": {"chatterbot": 1.0},
            "rouge_l_avg": 1.0,
            "n": {"chatterbot": 24},
            "samples": {
                "chatterbot": [
                    {"instruction": "q", "reference": "r", "response": text, "rouge_l": 0.0} for text in responses
                ]
            },
        }
        make_run(
            root / "divergences",
            f"divergence=ab,ablation={name}",
            config={**config, "divergence": "ab"},
            steps=STEPS,
            evals=[record],
            tokens=False,
            gradients=False,
        )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    # base: 3 of 4 replies are blank (" " counts as empty); full: 1 of 4, so it gets no reading
    assert "ab, base: 3 of the 4 stored final replies are empty" in text
    assert "full (AdaKD): “the a the”" in text
    assert "ab, full (AdaKD): " not in text
    R.clear_cache()


def test_seed_spread_of_the_paired_ce(tmp_path):
    """Two seeds: base at loss scale 1, AdaKD at 0.5 and 0.7. The factory's CE is
    3·scale/(1 + 0.1·step) + 0.5, so the paired ΔCE of a seed over steps 21–40 is
    (scale − 1)·mean(3/(1 + 0.1·step))."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    for seed, full_scale in ((0, 0.5), (1, 0.7)):
        for name, config, scale in (("base", BASE, 1.0), ("full", FULL, full_scale)):
            make_run(
                root / "ablation",
                f"ablation={name},seed={seed}",
                config={**config, "seed": seed},
                steps=STEPS,
                final_rouge={"chatterbot": 5.0},
                loss_scale=scale,
                tokens=False,
                gradients=False,
            )
    study = report.Study(report.collect_runs(root))
    unit = float(np.mean([3.0 / (1.0 + 0.1 * step) for step in range(21, STEPS + 1)]))
    expected = [(0.5 - 1.0) * unit, (0.7 - 1.0) * unit]
    assert study.paired_ce_by_seed("full (AdaKD)") == pytest.approx(expected)
    text = report.build_report(study, root, exported=set())
    mean, sd = float(np.mean(expected)), float(np.std(expected, ddof=1))
    assert f"full (AdaKD) {mean:+.3f} ± {sd:.3f} nats (2 of 2 seeds below zero)" in text
    assert f"changes by {mean:+.3f} ± {sd:.3f} nats (2 of 2 seeds below zero)" in text
    assert "one seed, so whether" not in text
    R.clear_cache()


def test_table1_reads_noise_and_the_data_each_regime_used(tmp_path):
    """GKD: data_source says which steps used student replies. DistiLLM with no student step
    is its divergence on ground truth: same ROUGE-L as the plain srkl runs -> said so."""
    from tests.rundir_factory import make_metrics

    R.clear_cache()
    root = tmp_path / "sample_runs"
    steps = 6

    def metrics(config, student_steps):
        rows = make_metrics(steps, config)
        for row in rows:
            row["data_source"] = "student" if row["step"] in student_steps else "ground_truth"
        return rows

    arms = [
        ("divergences", "srkl-base", {**BASE, "divergence": "srkl"}, 5.0, None),
        ("divergences", "srkl-full", {**FULL, "divergence": "srkl"}, 8.0, None),
        (
            "table1",
            "distillm",
            {**BASE, "divergence": "srkl", "divergence_params": {"lam": 0.1}, "regime": "distillm"},
            5.0,
            set(),
        ),
        (
            "table1",
            "distillm-adakd",
            {**FULL, "divergence": "srkl", "divergence_params": {"lam": 0.1}, "regime": "distillm"},
            8.0,
            set(),
        ),
        ("table1", "gkd", {**BASE, "divergence": "jsd", "regime": "gkd"}, 6.0, {1, 2, 5}),
    ]
    for sweep, name, config, rouge, student_steps in arms:
        make_run(
            root / sweep,
            name,
            config=config,
            steps=steps,
            final_rouge={"chatterbot": rouge},
            metrics=None if student_steps is None else metrics(config, student_steps),
            tokens=False,
            gradients=False,
        )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    # srkl and DistiLLM/srkl: 5.0 -> 8.0 = +3.00, beyond the 2.0-point floor; GKD has no AdaKD arm
    assert "| srkl | 5.00 | 8.00 | +3.00 | – | – | – | – | – | 1 / 1 |" in text
    assert "beyond it: srkl (+3.00), DistiLLM/srkl (+3.00)" in text
    assert "GKD/jsd 3 of 6 logged steps trained on student-generated replies" in text
    assert "DistiLLM/srkl 0 of 6, DistiLLM/srkl + AdaKD 0 of 6" in text
    assert "score exactly as the srkl and srkl + AdaKD runs" in text
    R.clear_cache()


def test_tables_3_and_5_one_row_per_arm(tmp_path):
    """CTKD, logit standardisation and fixed τ = 1 all have IDTS off and τ_base 1: three rows of
    Table 5, none pooled into "fixed τ = 1"; the CTKD run stays out of the component ablation."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    runs = {
        "fixed": ({**LATF}, 10.0),
        "ctkd": ({**LATF, "ctkd": True}, 20.0),
        "std": ({**LATF, "logit_standardize": True}, 30.0),
        "full": (FULL, 40.0),
        "topk": ({**FULL, "indicator": "topk"}, 50.0),
        "sft": ({**BASE, "kd_ratio": 0.0}, 5.0),
    }
    for name, (config, rouge) in runs.items():
        make_run(
            root / "tables",
            name,
            config=config,
            steps=STEPS,
            tokens=False,
            gradients=False,
            final_rouge={"chatterbot": rouge},
        )
    study = report.Study(report.collect_runs(root))
    assert [r.name for r in study.ablation] == ["fixed", "full"]  # +LATF and full; CTKD/std are not +LATF
    text = report.build_report(study, root, exported=set())
    for row in (
        "| fixed τ = 1 | rkl + LATF | 10.00 | 1 |",
        "| CTKD | rkl + LATF + CTKD | 20.00 | 1 |",
        "| logit standardisation | rkl + LATF + logit std | 30.00 | 1 |",
        "| IDTS (c = 0.5) | rkl + AdaKD | 40.00 | 1 |",
        "| Hellinger (AdaKD) | rkl + AdaKD | 40.00 | 1 |",
        "| NMTKD top-5 rank violation | rkl + AdaKD (indicator=top-5) | 50.00 | 1 |",
    ):
        assert row in text, row
    assert "Not yet run: fixed τ = 0.8, fixed τ = 1.2, fixed τ = e^-0.5, inverse IDTS (c = 0.5)" in text
    assert "Not yet run: forward KL, reverse KL, Jensen–Shannon, cross-entropy" in text
    assert "| SFT | SFT | 5.00 | 1 |" in text  # Table 2's SFT row
    assert "| SFT | 5.00 | – | – | – | – | – | – | – | 1 / – |" in text  # Table 1's
    R.clear_cache()


def test_heldout_ce_reading_against_the_methods_arm(tmp_path):
    """Table 5 shape: IDTS (the method's arm) over 3 seeds with held-out CE 3.9 / 4.0 / 4.1
    (std s = 0.1), fixed τ = 1 over 2 seeds at 3.6 / 3.7, CTKD one seed at 3.95. By hand:
    fixed τ = 1: Δ = 3.65 − 4.0 = −0.35, noise 2·0.1·√(1/2 + 1/3) = 0.183 → lower beyond noise;
    CTKD: Δ = −0.05, noise 2·0.1·√(1/1 + 1/3) = 0.231 → within noise."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    arms = {
        "idts": (FULL, [3.9, 4.0, 4.1]),
        "fixed": (LATF, [3.6, 3.7]),
        "ctkd": ({**LATF, "ctkd": True}, [3.95]),
    }
    for name, (config, ces) in arms.items():
        for seed, ce in enumerate(ces):
            record = _final_eval(ce, kl=ce / 2)
            make_run(
                root / "t5",
                f"{name},seed={seed}",
                config={**config, "seed": seed},
                steps=STEPS,
                evals=[record],
                tokens=False,
                gradients=False,
            )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    assert "| fixed τ = 1 | rkl + LATF | 10.00 | 2 | 3.650 | 1.825 |" in text
    assert "| CTKD | rkl + LATF + CTKD | 10.00 | 1 | 3.950 | 1.975 |" in text
    line = next(line for line in text.splitlines() if line.startswith("Held-out CE") and "IDTS (c = 0.5)" in line)
    assert "against IDTS (c = 0.5) (4.000, 3 seeds)" in line
    assert "s = 0.100, the std over the 3 seeds of IDTS (c = 0.5)" in line
    assert "Lower beyond noise: fixed τ = 1 -0.350 (noise 0.183)" in line
    assert "Within noise: CTKD -0.050 (noise 0.231)" in line
    assert "Higher beyond noise" not in line
    # the single-seed caveat names the one arm with one seed, and goes when no arm has one
    assert line.endswith(
        " CTKD has a single training seed: treat a difference beyond noise there as a lead to re-run "
        "with more seeds, not as a finding."
    )
    shutil.rmtree(root / "t5" / "ctkd,seed=0")
    R.clear_cache()
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    line = next(line for line in text.splitlines() if line.startswith("Held-out CE") and "IDTS (c = 0.5)" in line)
    assert "Lower beyond noise: fixed τ = 1 -0.350 (noise 0.183)." in line
    assert "single training seed" not in line
    R.clear_cache()


def test_table1_reads_heldout_ce_paired_by_seed_and_against_noise(tmp_path):
    """Table 1 with held-out CE. rkl: plain 3.8 / 3.9 / 4.0 and AdaKD 4.0 / 4.3 / 4.1 over seeds
    0-2 -> paired d = 0.2, 0.4, 0.1: mean 0.2333, sd 0.15275, 95 % half-width
    4.303·0.15275/√3 = 0.379 -> within. s = 0.15275 (both rkl arms). fkl 3.0 -> 3.5 (one seed):
    noise 2·s·√2 = 0.432, Δ +0.5 -> higher beyond noise. jsd 3.0 -> 2.9: Δ −0.1 within. Signs: 2 of 3 above plain.
    Against an SFT run with CE 3.5 and KL 1.2 (no KD run has KL, so KL has no spread and is not
    read): rkl plain 3.9 − 3.5 = +0.4 against 2·s·√(1/3 + 1) = 0.353 -> above SFT; fkl and jsd
    3.0 − 3.5 = −0.5 against 0.432 -> below."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    arms = {
        ("rkl", "base"): [3.8, 3.9, 4.0],
        ("rkl", "full"): [4.0, 4.3, 4.1],
        ("fkl", "base"): [3.0],
        ("fkl", "full"): [3.5],
        ("jsd", "base"): [3.0],
        ("jsd", "full"): [2.9],
    }
    for (div, arm), ces in arms.items():
        for seed, ce in enumerate(ces):
            record = _final_eval(ce)
            make_run(
                root / "divergences",
                f"divergence={div},ablation={arm},seed={seed}",
                config={**(BASE if arm == "base" else FULL), "divergence": div, "seed": seed},
                steps=STEPS,
                evals=[record],
                tokens=False,
                gradients=False,
            )
    sft_record = dict(record, ce={"chatterbot": 3.5}, ce_avg=3.5, kl_teacher={"chatterbot": 1.2}, kl_teacher_avg=1.2)
    make_run(
        root / "sft",
        "table1=sft",
        config={**BASE, "kd_ratio": 0.0, "seed": 0},
        steps=STEPS,
        evals=[sft_record],
        tokens=False,
        gradients=False,
    )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    assert "| rkl | 10.00 | 10.00 | +0.00 | 3.900 | 4.133 | +0.233 | – | – | 3 / 3 |" in text
    assert "| fkl | 10.00 | 10.00 | +0.00 | 3.000 | 3.500 | +0.500 | – | – | 1 / 1 |" in text
    assert "| SFT | 10.00 | – | – | 3.500 | – | – | 1.200 | – | 1 / – |" in text
    sft_line = next(line for line in text.splitlines() if line.startswith("Reading, against the SFT baseline"))
    assert "Held-out CE against SFT (3.500, 1 seed; s = 0.153)" in sft_line
    assert "plain KD below SFT beyond noise: fkl -0.500 (noise 0.432), jsd -0.500 (noise 0.432)" in sft_line
    assert "plain KD above SFT beyond noise (SFT better): rkl +0.400 (noise 0.353)" in sft_line
    assert "Held-out KL against SFT" not in sft_line  # only SFT has KL here: no KL reading
    # every ROUGE-L is 10.00: the methods' order on it is a tie, and ρ says so instead of "–"
    order = next(line for line in text.splitlines() if line.startswith("Reading, the methods' plain arms"))
    assert "is undefined (one of the metrics is equal for every method)" in order
    line = next(line for line in text.splitlines() if line.startswith("Reading, held-out CE"))
    assert "s = 0.153" in line
    within = line.split("within noise for ")[1].split(";")[0]
    assert "rkl +0.233 (paired by seed, 95 % interval ± 0.379)" in within
    assert "jsd -0.100 (noise 0.432)" in within and "fkl" not in within
    assert "AdaKD raises it beyond noise for fkl +0.500 (noise 0.432)" in line
    assert "AdaKD lowers it" not in line
    assert "AdaKD's held-out CE is above plain's for 2 of the 3 methods" in line
    R.clear_cache()


def test_table1_says_when_distillms_phi_rose(tmp_path):
    """φ (student_data_prob) 0 for steps 1-2, 0.1 at 3-4, 0.2 at 5-6: 'rose to 0.20 at step 3';
    the run trained on student replies at steps 4 and 6, so it is not called plain srkl. Its
    validation events are quoted beside the threshold the rule compares them with."""
    from tests.rundir_factory import make_events, make_metrics

    R.clear_cache()
    root = tmp_path / "sample_runs"
    config = {**FULL, "divergence": "srkl", "regime": "distillm"}
    rows = make_metrics(6, config)
    for row in rows:
        row["student_data_prob"] = {1: 0.0, 2: 0.0, 3: 0.1, 4: 0.1, 5: 0.2, 6: 0.2}[row["step"]]
        row["data_source"] = "student" if row["step"] in (4, 6) else "ground_truth"
    events = make_events(6, config, "finished") + [
        {"step": step, "kind": "validation", "message": "validation", "loss": loss}
        for step, loss in ((0, 4.0), (2, 4.15), (4, 4.3))
    ]
    make_run(
        root / "table1",
        "distillm-adakd",
        config=config,
        steps=6,
        metrics=rows,
        events=events,
        tokens=False,
        gradients=False,
    )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    assert "DistiLLM/srkl + AdaKD 2 of 6 logged steps trained on student-generated replies" in text
    # the validation CE the rule read: 4.0 at step 0, threshold 4.0 + ε 0.1 = 4.100
    assert (
        "DistiLLM/srkl + AdaKD: φ rose to 0.20, first logged at step 3 (validation CE 4.000 at step 0, then "
        "4.150 / 4.300 at steps 2 / 4, against the first rise threshold 4.100 = step-0 value + ε 0.1)"
    ) in text
    assert "φ stayed 0" not in text
    R.clear_cache()


def test_the_c_reading_compares_the_seeds_every_c_has():
    """c = 0.5 comes from the ablation's three seeds, the other c from seed 0 only: the sentence
    that names the lowest and highest held-out CE compares seed 0 with seed 0, not a 3-seed mean
    with single seeds."""
    from types import SimpleNamespace

    from analysis.report import table_sections

    def run(c, seed, ce):
        return SimpleNamespace(config={"idts_c": c, "seed": seed, "latf": "adaptive", "idts": "on"}, ce=ce)

    runs = [run(0.5, 0, 3.70), run(0.5, 1, 4.00), run(0.5, 2, 4.00), run(0.1, 0, 3.75), run(0.9, 0, 3.80)]
    low, high, means = table_sections._lowest_and_highest_by_c(runs, lambda r: r.ce)
    assert (low, high) == (0.5, 0.9) and means[0.5] == 3.70  # the 3-seed mean (3.90) would be the highest
    assert "training seed 0, which every c has" in table_sections._seeds_compared(runs)
    no_common = [run(0.5, 1, 4.0), run(0.1, 0, 3.75)]
    assert table_sections._common_seeds(no_common) == no_common  # nothing to pair: every run counts
    assert table_sections._seeds_compared(no_common) == (
        "training seeds 0, 1 (no seed is shared by every c: means over different seeds)"
    )


def test_table4_gives_the_adaptive_schedule_one_row_over_its_seeds(tmp_path):
    """Adaptive LATF ends at a different r on each seed (0.60 on seed 0, 0.70 on seed 1): one
    row with 2 seeds and the range of final r, not one single-seed row per final r; the fixed
    schedule keeps its own row."""
    from tests.rundir_factory import make_metrics

    R.clear_cache()
    root = tmp_path / "sample_runs"
    for seed, last_r in ((0, 0.6), (1, 0.7)):
        config = {**FULL, "seed": seed}
        rows = make_metrics(STEPS, config)
        rows[0]["ratio"], rows[-1]["next_ratio"] = 1.0, last_r  # the r the run ended on
        make_run(root / "ablation", f"full,seed={seed}", config=config, steps=STEPS, metrics=rows, tokens=False)
    make_run(
        root / "schedule-fixed",
        "latf=fixed",
        config={"latf": "fixed", "idts": "on", "ratio_start": 0.75, "seed": 0},
        steps=STEPS,
        tokens=False,
    )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    table4 = text.split("## Table 4 shape")[1].split("\n## ")[0]
    rows = [line for line in table4.splitlines() if line.startswith("| adaptive")]
    assert len(rows) == 1 and rows[0].startswith("| adaptive (r 1.00 → 0.60–0.70) | rkl + AdaKD |")
    assert rows[0].split(" | ")[3] == "2"  # seeds
    assert any(line.startswith("| fixed (r 0.75 → 0.75) |") for line in table4.splitlines())
    R.clear_cache()


def test_the_methods_plain_arms_are_ordered_on_both_metrics():
    """ROUGE-L a 10, b 12, c 14 against held-out CE a 3.0, b 3.5, c 4.0: ROUGE-L puts c first,
    CE puts a first, so the ranks of ROUGE-L (1, 2, 3) and of −CE (3, 2, 1) are reversed:
    Spearman's ρ = −1. Range 4 points, beyond a 3.5-point noise level; with the gate failing on
    ROUGE-L it is not a finding. Below three methods (or with a NaN) there is no reading."""
    from analysis.report.table1_section import method_order_reading

    rouge, ce = {"a": 10.0, "b": 12.0, "c": 14.0}, {"a": 3.0, "b": 3.5, "c": 4.0}
    line = method_order_reading(rouge, ce, 3.5, unranked=False)[1]
    assert "ROUGE-L, best first: c 14.00, b 12.00, a 10.00 (a range of 4.00 points, beyond the 3.5-point" in line
    assert "held-out CE, best first: a 3.000, b 3.500, c 4.000." in line
    assert (
        "over the 3 methods is -1.00 (1: the same order, −1: reversed; over 3 methods, every method with a single"
        in line
    )
    several = method_order_reading(rouge, ce, 3.5, unranked=False, seeds={"a": 3, "b": 1, "c": 3})[1]
    assert "over 3 methods, 1 of the 3 methods with a single seed, a lead at most" in several
    assert "not a finding (the gate fails on ROUGE-L)" in method_order_reading(rouge, ce, 3.5, unranked=True)[1]
    assert "within the 5.0-point" in method_order_reading(rouge, ce, 5.0, unranked=False)[1]
    assert method_order_reading({**rouge, "c": math.nan}, ce, 3.5, unranked=False) == []


def test_a_distillm_run_whose_phi_stayed_0_shows_its_validation_trace(tmp_path):
    """φ 0 at every step, validation CE 4.0 → 3.9 (never above 4.0 + ε 0.1): the report says φ
    stayed 0 and quotes the trace and the threshold it never reached."""
    from tests.rundir_factory import make_events, make_metrics

    R.clear_cache()
    root = tmp_path / "sample_runs"
    config = {**BASE, "divergence": "srkl", "regime": "distillm"}
    rows = [dict(r, student_data_prob=0.0, data_source="ground_truth") for r in make_metrics(6, config)]
    events = make_events(6, config, "finished") + [
        {"step": step, "kind": "validation", "message": "validation", "loss": loss}
        for step, loss in ((0, 4.0), (3, 3.9))
    ]
    make_run(root / "table1", "distillm", config=config, steps=6, metrics=rows, events=events, tokens=False)
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    assert (
        "DistiLLM/srkl: φ stayed 0 (DistiLLM raises it only when the validation CE comes back at least ε "
        "above its reference, and a student that is still learning keeps improving: validation CE 4.000 at step 0, "
        "then 3.900 at step 3, against the first rise threshold 4.100 = step-0 value + ε 0.1)"
    ) in text
    R.clear_cache()


def _table5_root(tmp_path, arms: dict) -> Path:
    """A Table 5 study: arm name -> (config, held-out CE per seed)."""
    root = tmp_path / "sample_runs"
    for name, (config, ces) in arms.items():
        for seed, ce in enumerate(ces):
            record = _final_eval(ce)
            make_run(
                root / "t5",
                f"{name},seed={seed}",
                config={**config, "seed": seed},
                steps=STEPS,
                evals=[record],
                tokens=False,
                gradients=False,
            )
    return root


@pytest.mark.parametrize(
    ("ces", "caveat"),
    [
        # IDTS 3 seeds (s = 0.1), the two others one seed each: "every arm but" the reference
        (
            {"idts": [3.9, 4.0, 4.1], "fixed": [3.6], "ctkd": [3.95]},
            " Every arm but IDTS (c = 0.5) has a single training seed",
        ),
        # the reference itself has one seed (s from fixed τ = 1's two): every difference is one run's
        (
            {"idts": [4.0], "fixed": [3.6, 3.8], "ctkd": [3.95, 4.05]},
            " IDTS (c = 0.5), the reference of every difference, has a single training seed",
        ),
    ],
)
def test_the_single_seed_caveat_names_whom_it_concerns(tmp_path, ces, caveat):
    R.clear_cache()
    configs = {"idts": FULL, "fixed": LATF, "ctkd": {**LATF, "ctkd": True}}
    root = _table5_root(tmp_path, {name: (configs[name], values) for name, values in ces.items()})
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    line = next(line for line in text.splitlines() if line.startswith("Held-out CE") and "IDTS (c = 0.5)" in line)
    assert caveat in line
    R.clear_cache()


def test_a_method_scoring_exactly_as_another_counts_once_in_the_readings(tmp_path):
    """DistiLLM/srkl whose φ never moved scores exactly as srkl (3.0 plain, 3.2 with AdaKD, both
    ROUGE-L 10): its row stays in the table, the readings across methods leave it out. fkl has
    the same plain CE but another AdaKD CE, so it is not a twin."""
    R.clear_cache()
    root = tmp_path / "sample_runs"
    runs = {
        ("srkl", "base", "ground_truth"): 3.0,
        ("srkl", "full", "ground_truth"): 3.2,
        ("srkl", "base", "distillm"): 3.0,
        ("srkl", "full", "distillm"): 3.2,
        ("fkl", "base", "ground_truth"): 3.0,
        ("fkl", "full", "ground_truth"): 3.1,
    }
    for (div, arm, regime), ce in runs.items():
        record = _final_eval(ce)
        config = {**(BASE if arm == "base" else FULL), "divergence": div, "regime": regime, "seed": 0}
        make_run(
            root / "divergences", f"{div},{arm},{regime}", config=config, steps=STEPS, evals=[record], tokens=False
        )
    text = report.build_report(report.Study(report.collect_runs(root)), root, exported=set())
    assert "| DistiLLM/srkl | 10.00 | 10.00 | +0.00 | 3.000 | 3.200 | +0.200 |" in text
    assert "The readings below leave out DistiLLM/srkl, whose runs score exactly as srkl's" in text
    assert "fkl, whose runs" not in text
    R.clear_cache()
