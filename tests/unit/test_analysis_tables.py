"""analysis.tables: results and ablation tables on hand-made runs with known final scores;
every expected number below is computed by hand from the scores written."""

from __future__ import annotations

import math
import statistics

import pytest

from analysis import runs as R
from analysis.runs import load_run
from analysis.tables import ablation_table, paper_table, results_frame, results_table, table_arm
from tests.rundir_factory import make_run

ADAKD = {"latf": "adaptive", "idts": "on"}
BASE = {"latf": "off", "idts": "off"}
IDTS = {"latf": "off", "idts": "on"}
LATF = {"latf": "adaptive", "idts": "off"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    R.clear_cache()
    yield


def _run(root, name, config, rouge, seed=0, **kwargs):
    return load_run(
        make_run(
            root, name, config={**config, "seed": seed}, final_rouge=rouge, tokens=False, gradients=False, **kwargs
        )
    )


def test_results_table_mean_std_over_seeds_with_references(tmp_path):
    refs = lambda t: {"teacher": {"dolly": t, "vicuna": t + 10}, "student_init": {"dolly": 5.0, "vicuna": 7.0}}  # noqa: E731
    runs = [
        _run(tmp_path, "ada-s0", ADAKD, {"dolly": 30.0, "vicuna": 20.0}, 0, reference_rouge=refs(40.0)),
        _run(tmp_path, "ada-s1", ADAKD, {"dolly": 32.0, "vicuna": 24.0}, 1, reference_rouge=refs(42.0)),
        _run(tmp_path, "base-s0", BASE, {"dolly": 28.5, "vicuna": 19.0}, 0, reference_rouge=refs(40.0)),
        _run(tmp_path, "live", ADAKD, {"dolly": 99.0, "vicuna": 99.0}, 2, state="running"),
    ]
    table = results_table(runs)
    assert list(table.columns) == ["method", "dolly", "vicuna", "average", "n_seeds"]
    assert table["method"].tolist() == ["teacher", "student (init)", "rkl + AdaKD", "rkl"]
    rows = table.set_index("method")
    # AdaKD: dolly 30, 32 -> 31 ± √2; vicuna 20, 24 -> 22 ± 2√2; average 25, 28 -> 26.5 ± 3/√2
    assert rows.loc["rkl + AdaKD", "dolly"] == "31.00 ± 1.41"
    assert rows.loc["rkl + AdaKD", "vicuna"] == "22.00 ± 2.83"
    assert rows.loc["rkl + AdaKD", "average"] == "26.50 ± 2.12"
    assert rows.loc["rkl + AdaKD", "n_seeds"] == 2
    # one seed: the mean alone
    assert rows.loc["rkl", "dolly"] == "28.50" and rows.loc["rkl", "average"] == "23.75"
    assert rows.loc["rkl", "n_seeds"] == 1
    # teacher once per seed (seeds 0 and 1: 40 and 42), not once per run
    assert rows.loc["teacher", "dolly"] == "41.00 ± 1.41" and rows.loc["teacher", "n_seeds"] == 2
    assert rows.loc["student (init)", "vicuna"] == "7.00 ± 0.00"

    numbers = results_frame(runs).set_index(["method", "dataset"])
    assert numbers.loc[("rkl + AdaKD", "average"), "mean"] == 26.5
    assert numbers.loc[("rkl + AdaKD", "average"), "std"] == pytest.approx(3 / math.sqrt(2))
    assert math.isnan(numbers.loc[("rkl", "dolly"), "std"])

    everything = results_table(runs, finished_only=False, references=False).set_index("method")
    assert everything.loc["rkl + AdaKD", "n_seeds"] == 3
    scores = [30.0, 32.0, 99.0]  # the running run's last evaluation counts too
    assert everything.loc["rkl + AdaKD", "dolly"] == f"{statistics.mean(scores):.2f} ± {statistics.stdev(scores):.2f}"


def test_results_table_one_row_per_run_and_missing_datasets(tmp_path):
    runs = [_run(tmp_path, "a", ADAKD, {"dolly": 30.0}), _run(tmp_path, "b", BASE, {"dolly": 20.0, "sni": 10.0})]
    table = results_table(runs, group_by=("name",), references=False)
    assert table["name"].tolist() == ["a", "b"]
    assert table.set_index("name").loc["a", "sni"] == ""  # never evaluated there
    assert table.set_index("name").loc["b", "average"] == "15.00"
    by_two = results_table(runs, group_by=("divergence", "latf"), references=False)
    assert by_two[["divergence", "latf"]].values.tolist() == [["rkl", "adaptive"], ["rkl", "off"]]
    by_c = results_table([_run(tmp_path, "c3", {"idts_c": 0.3}, {"dolly": 1.0})], group_by=("c",))
    assert by_c["c"].tolist() == [0.3]
    with pytest.raises(ValueError, match="group_by needs at least one key"):
        results_table(runs, group_by=())


def test_empty_results(tmp_path):
    assert results_table([]).columns.tolist() == ["method", "average", "n_seeds"]
    run = load_run(make_run(tmp_path, "no-eval", evals=False))
    assert results_frame([run]).empty
    assert ablation_table([run]).columns.tolist() == ["component", "method", "average", "n_seeds", "Δ average"]


def test_ablation_table_order_and_deltas(tmp_path):
    runs = [  # deliberately shuffled, plus runs that are not part of the ablation
        _run(tmp_path, "full-s0", ADAKD, {"d": 39.0}, 0),
        _run(tmp_path, "latf", LATF, {"d": 37.07}),
        _run(tmp_path, "fixed", {"latf": "fixed", "ratio_start": 0.75, "idts": "off"}, {"d": 50.0}),
        _run(tmp_path, "base", BASE, {"d": 37.03}),
        _run(tmp_path, "idts", IDTS, {"d": 38.55}),
        _run(tmp_path, "full-s1", ADAKD, {"d": 39.02}, 1),
        _run(tmp_path, "inverse", {"latf": "off", "idts": "inverse"}, {"d": 1.0}),
        _run(tmp_path, "fkl-base", {**BASE, "divergence": "fkl"}, {"d": 30.0}),
        _run(tmp_path, "fkl-full", {**ADAKD, "divergence": "fkl"}, {"d": 31.5}),
    ]
    table = ablation_table(runs)
    assert list(table.columns) == ["component", "method", "d", "average", "n_seeds", "Δ average"]
    assert table["component"].tolist() == ["base", "+IDTS", "+LATF", "full (AdaKD)", "base", "full (AdaKD)"]
    assert table["method"].tolist() == ["rkl", "rkl + IDTS", "rkl + LATF", "rkl + AdaKD", "fkl", "fkl + AdaKD"]
    # the paper's ablation numbers: base 37.03, +IDTS 38.55, +LATF 37.07, full 39.01
    assert table["average"].tolist() == ["37.03", "38.55", "37.07", "39.01 ± 0.01", "30.00", "31.50"]
    assert table["Δ average"].tolist() == ["+0.00", "+1.52", "+0.04", "+1.98", "+0.00", "+1.50"]
    assert table["n_seeds"].tolist() == [1, 1, 1, 2, 1, 1]


def test_ablation_without_a_base_run_leaves_delta_blank(tmp_path):
    table = ablation_table([_run(tmp_path, "full", ADAKD, {"d": 39.0})])
    assert table["Δ average"].tolist() == [""]


def test_grouping_by_seed_next_to_reference_rows(tmp_path):
    runs = [
        _run(tmp_path, f"s{seed}", ADAKD, {"d": 30.0 + seed}, seed, reference_rouge={"teacher": {"d": 40.0 + seed}})
        for seed in range(3)
    ]
    table = results_table(runs, group_by=("method", "seed"))
    assert table[["method", "seed"]].values.tolist() == [
        ["teacher", ""],
        ["rkl + AdaKD", 0],
        ["rkl + AdaKD", 1],
        ["rkl + AdaKD", 2],
    ]
    assert table["d"].tolist() == ["41.00 ± 1.00", "30.00", "31.00", "32.00"]
    assert table["n_seeds"].tolist() == [3, 1, 1, 1]


def test_paper_table5_one_row_per_arm_never_pooling_methods(tmp_path):
    """CTKD, logit standardisation and fixed τ = 1 all run with IDTS off at τ_base = 1: three
    arms, three rows. Runs that are no arm of the table (rkl + IDTS, LATF off) are left out."""
    arms = {
        "fixed-1.0": ({"idts": "off"}, [30.0, 32.0]),
        "ctkd": ({"idts": "off", "ctkd": True}, [20.0]),
        "logit-std": ({"idts": "off", "logit_standardize": True}, [25.0]),
        "fixed-0.8": ({"idts": "off", "base_temperature": 0.8}, [27.0]),
        "idts": ({}, [35.0]),
    }
    runs = []
    for arm, (config, scores) in arms.items():
        for seed, score in enumerate(scores):
            runs.append(
                load_run(
                    make_run(tmp_path, f"{arm}-s{seed}", config={**config, "seed": seed}, final_rouge={"d1": score})
                )
            )
    runs.append(load_run(make_run(tmp_path, "idts-only", config={"latf": "off"}, final_rouge={"d1": 99.0})))
    table = paper_table(runs, "table5")
    assert table["arm"].tolist() == ["fixed-1.0", "fixed-0.8", "ctkd", "logit-std", "idts"]
    assert table["average"].tolist() == [
        f"31.00 ± {statistics.stdev([30.0, 32.0]):.2f}",
        "27.00",
        "20.00",
        "25.00",
        "35.00",
    ]
    assert table["n_seeds"].tolist() == [2, 1, 1, 1, 1]
    assert table_arm({"latf": "off"}, "table5") is None
    assert table_arm({"seed": 1}, "table3") == "hellinger" and table_arm({"seed": 1}, "table4") == "latf"
    assert table_arm({"kd_ratio": 0.0, "latf": "off", "idts": "off"}, "table1") == "sft"
    assert paper_table(runs[-1:], "table5").empty
    with pytest.raises(ValueError, match="unknown paper table"):
        paper_table(runs, "table9")
