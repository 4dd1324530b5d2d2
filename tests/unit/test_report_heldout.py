"""The results report's held-out section (analysis/report/heldout_section.py): per-run rows and
the paired arm − base differences with a 95 % t interval, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from analysis.report.heldout_section import heldout_section, paired_interval
from analysis.report.study import Study
from analysis.runs import load_run
from tests.rundir_factory import make_run
from tests.unit.test_analysis_validity import _record

BASE = {"latf": "off", "idts": "off"}
FULL = {"latf": "adaptive", "idts": "on", "idts_c": 0.5}


def test_paired_interval_by_hand():
    assert paired_interval([0.7]) is None  # one pair: no spread, no interval
    mean, half = paired_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert mean == pytest.approx(2.0) and half == pytest.approx(4.303 / math.sqrt(3))
    mean, half = paired_interval([-0.2, -0.4])  # mean -0.3, sd 0.1414, t(0.975, 1) = 12.706
    assert mean == pytest.approx(-0.3) and half == pytest.approx(12.706 * math.sqrt(0.02) / math.sqrt(2))


def _run(tmp_path, name, arm, seed, rouge, ce, kl):
    evals = [
        _record("teacher", 0, 20.0, 0.4, 2.0),
        _record("student_init", 0, 8.0, 0.3, 5.0, 0.2, 1.5),
        _record("student", 10, rouge, 0.5, ce, 0.05, kl),
    ]
    return load_run(make_run(tmp_path, name, evals=evals, config={"seed": seed, **arm}))


def test_section_rows_and_paired_differences(tmp_path):
    runs = [
        _run(tmp_path, "b0", BASE, 0, 12.0, 3.00, 1.00),
        _run(tmp_path, "b1", BASE, 1, 13.0, 3.10, 1.10),
        _run(tmp_path, "b2", BASE, 2, 12.5, 3.05, 1.05),
        _run(tmp_path, "f0", FULL, 0, 12.5, 2.90, 0.90),
        _run(tmp_path, "f1", FULL, 1, 13.1, 3.00, 1.00),
        _run(tmp_path, "f2", FULL, 2, 12.4, 2.95, 0.98),
    ]
    text = heldout_section(Study(runs))
    assert "| base | 0 | 12.00 ± 0.50 | 3.000 | 1.000 | 5.0% |" in text
    assert "| full (AdaKD) | 2 | 12.40 ± 0.50 | 2.950 | 0.980 | 5.0% |" in text
    assert "| teacher |  | 20.00 | 2.000 | – | 0.0% |" in text
    assert "| student (init) |  | 8.00 | 5.000 | 1.500 | 20.0% |" in text
    # CE differences -0.10, -0.10, -0.10: sd 0, so the interval is 0 wide and excludes 0
    assert "-0.100 ± 0.000 (better)" in text
    # ROUGE-L differences +0.5, +0.1, -0.1: mean 0.1667, sd 0.3055, half = 4.303 * 0.3055 / sqrt(3)
    d = [0.5, 0.1, -0.1]
    half = 4.303 * (sum((x - sum(d) / 3) ** 2 for x in d) / 2) ** 0.5 / 3**0.5
    assert f"+0.17 ± {half:.2f} (no difference shown)" in text
    # KL differences -0.10, -0.10, -0.07: mean -0.0933, half = 4.303 * sd / sqrt(3)
    k = [-0.10, -0.10, -0.07]
    half = 4.303 * (sum((x - sum(k) / 3) ** 2 for x in k) / 2) ** 0.5 / 3**0.5
    assert f"{sum(k) / 3:+.3f} ± {half:.3f} (better)" in text


def test_one_seed_says_so_and_no_pairs_say_so(tmp_path):
    one = [_run(tmp_path, "b0", BASE, 0, 12.0, 3.0, 1.0), _run(tmp_path, "f0", FULL, 0, 11.0, 3.2, 1.1)]
    text = heldout_section(Study(one))
    assert "| full (AdaKD) | 1 | -1.00 (one seed) | +0.200 (one seed) | +0.100 (one seed) |" in text
    unpaired = [_run(tmp_path, "b5", BASE, 5, 12.0, 3.0, 1.0), _run(tmp_path, "f6", FULL, 6, 11.0, 3.2, 1.1)]
    assert "No arm shares a training seed with a base run yet" in heldout_section(Study(unpaired))
    assert heldout_section(Study([])) == ""


def test_a_metric_on_which_base_fails_the_gate_gives_no_finding(tmp_path):
    """Base reaches the teacher's ROUGE-L (20.0): the gate fails on ROUGE-L, so a clear ROUGE-L
    difference is not a finding, while CE (teacher 2.0 < base ~3 < initial 5.0) still ranks."""
    runs = [
        _run(tmp_path, "b0", BASE, 0, 20.0, 3.00, 1.00),
        _run(tmp_path, "b1", BASE, 1, 20.1, 3.10, 1.10),
        _run(tmp_path, "b2", BASE, 2, 19.9, 3.05, 1.05),
        _run(tmp_path, "f0", FULL, 0, 18.0, 3.20, 1.20),
        _run(tmp_path, "f1", FULL, 1, 18.1, 3.30, 1.30),
        _run(tmp_path, "f2", FULL, 2, 17.9, 3.25, 1.25),
    ]
    text = heldout_section(Study(runs))
    assert "-2.00 ± 0.00 (not a finding: the gate fails on this metric)" in text
    assert "+0.200 ± 0.000 (worse)" in text  # CE: every seed +0.2

    # the report's verdict list says the same: no ROUGE-L verdict, CE worse by the same interval
    from analysis.report.heldout_section import paired_heldout
    from analysis.report.report import verdict_section

    mean, half, n = paired_heldout(runs, "full (AdaKD)", "ce")
    assert (mean, half, n) == (pytest.approx(0.2), pytest.approx(0.0, abs=1e-12), 3)
    assert paired_heldout(runs, "+IDTS", "ce") is None  # no such arm
    verdicts = verdict_section(Study(runs), threshold=2.0)
    assert "not a finding: the study fails the validity gate on ROUGE-L" in verdicts
    assert "full (AdaKD) +0.200 ± 0.000 over 3 seeds (worse)" in verdicts


SFT = {"kd_ratio": 0.0, "latf": "off", "idts": "off"}


def test_the_sft_baseline_gets_a_row_and_plain_kd_is_read_against_it(tmp_path):
    base = [
        _run(tmp_path, "b0", BASE, 0, 12.0, 3.00, 1.00),
        _run(tmp_path, "b1", BASE, 1, 13.0, 3.10, 1.10),
    ]
    # base CE mean 3.05, sd 0.0707 (2 sd 0.141); KL mean 1.05, the same spread
    worse_sft = _run(tmp_path, "s0", SFT, 0, 11.0, 3.40, 1.40)
    text = heldout_section(Study([*base, worse_sft]))
    assert "| SFT (no teacher term) | 0 | 11.00 | 3.400 | 1.400 | 5.0% |" in text
    assert "held-out CE 3.050 (plain KD, 2 seeds) vs 3.400 (SFT, 1)" in text
    assert "KL(teacher ‖ student) 1.050 (plain KD, 2 seeds) vs 1.400 (SFT, 1)" in text
    assert (
        "plain KD is lower than SFT by more than twice its seed spread on held-out CE and KL(teacher ‖ student)."
        in text
    )
    # 3.15 is within 3.05 + 0.141 on CE: KD is not shown to beat SFT, whatever KL says
    close_sft = _run(tmp_path, "s1", SFT, 0, 11.0, 3.15, 1.40)
    text = heldout_section(Study([*base, close_sft]))
    assert "**plain KD does not beat the SFT baseline** here (it is not lower by more than" in text
    assert "SFT is lower" not in text
    # SFT 2.80 is below 3.05 − 0.141 on CE (and level on KL 1.05): SFT better, named as such
    better_sft = _run(tmp_path, "s2", SFT, 0, 11.0, 2.80, 1.05)
    text = heldout_section(Study([*base, better_sft]))
    assert "(SFT is lower by more than twice plain KD's seed spread on held-out CE)" in text
    assert "Against the SFT baseline" not in heldout_section(Study(base))
    # one plain-KD seed: no spread to read against, so neither side is called better
    text = heldout_section(Study([base[0], better_sft]))
    assert "held-out CE 3.000 (plain KD, 1 seed) vs 2.800 (SFT, 1)" in text
    assert "plain KD has a single seed, so there is no seed spread" in text and "SFT is lower" not in text
