"""Result tables like the paper's Tables 2–5: ROUGE-L of the final student evaluation per
dataset and averaged, one row per method (or any grouping), mean ± std over seeds.

    results_frame(runs)        long, numeric: group keys, dataset, mean, std, n_seeds
    results_table(runs)        wide, display-ready strings ("31.70 ± 0.42")
    ablation_table(runs)       base, +IDTS, +LATF, full (AdaKD) per base divergence
    paper_table(runs, "table5") the arms of one of the paper's tables (adakd.presets.TABLES), in
                               the paper's order; a run is an arm when its method is the arm's

std is the sample standard deviation over runs (ddof = 1); with one run a cell shows the
mean only. Teacher and initial-student reference rows come from the eval records with
model "teacher" / "student_init" (one per distinct run seed, since every run of a seed
scores the same teacher).
"""

from __future__ import annotations

import pandas as pd

from adakd.config import RunConfig
from adakd.presets import TABLES
from analysis.runs import Run, method_label

REFERENCE_MODELS = {"teacher": "teacher", "student_init": "student (init)"}
COMPONENTS = {
    ("off", "off"): "base",
    ("off", "on"): "+IDTS",
    ("adaptive", "off"): "+LATF",
    ("adaptive", "on"): "full (AdaKD)",
}
COMPONENT_ORDER = list(COMPONENTS.values())


KEY_ALIASES = {"c": "idts_c", "r": "ratio_start"}


def group_value(run: Run, key: str):
    """Value of grouping key `key` for a run: "method" (method_label), "name", "seed",
    "preset", "state", or any RunConfig field ("c" and "r" stand for idts_c, ratio_start)."""
    if key == "method":
        return method_label(run.config) if run.config else "unknown"
    if key == "name":
        return run.name
    if key == "seed":
        return run.seed
    if key in ("preset", "state"):
        return run.meta.get("preset") if key == "preset" else run.state
    return run.config.get(KEY_ALIASES.get(key, key))


def results_frame(
    runs: list[Run], group_by=("method",), finished_only: bool = True, references: bool = True
) -> pd.DataFrame:
    """Long numeric results: columns [*group_by, "dataset", "mean", "std", "n_seeds"].

    One entry per run: its last student evaluation (finished runs only unless
    finished_only=False). Reference rows (teacher, student (init)) carry their name in the
    first group column and "" in the others; they come first. Datasets keep their order of
    first appearance with "average" last; groups keep the order of their first run.
    """
    group_by = tuple(group_by)
    if not group_by:
        raise ValueError("group_by needs at least one key, e.g. ('method',)")
    rows = []
    for run in runs:
        if finished_only and run.state != "finished":
            continue
        final = run.final_eval("student")
        keys = {key: group_value(run, key) for key in group_by}
        for dataset, score in zip(final["dataset"], final["rouge_l"], strict=True):
            rows.append({**keys, "dataset": dataset, "score": float(score)})
    if references:
        rows = _reference_rows(runs, group_by, finished_only) + rows
    columns = [*group_by, "dataset", "mean", "std", "n_seeds"]
    if not rows:
        return pd.DataFrame(columns=columns)
    scores = pd.DataFrame(rows)
    frame = (
        scores.groupby([*group_by, "dataset"], sort=False, dropna=False)["score"]
        .agg(mean="mean", std="std", n_seeds="count")
        .reset_index()
    )
    order = _dataset_order(scores["dataset"])
    group_rank = {k: i for i, k in enumerate(dict.fromkeys(map(tuple, scores[list(group_by)].itertuples(index=False))))}
    frame["_group"] = [group_rank[tuple(k)] for k in frame[list(group_by)].itertuples(index=False)]
    frame["_dataset"] = frame["dataset"].map({d: i for i, d in enumerate(order)})
    frame = frame.sort_values(["_group", "_dataset"]).drop(columns=["_group", "_dataset"])
    return frame[columns].reset_index(drop=True)


def results_table(
    runs: list[Run], group_by=("method",), finished_only: bool = True, references: bool = True, digits: int = 2
) -> pd.DataFrame:
    """Wide table: [*group_by, <dataset>…, "average", "n_seeds"], cells "mean ± std" (or the
    mean alone for one run), "" where a group has no score for a dataset."""
    long = results_frame(runs, group_by, finished_only, references)
    return _widen(long, tuple(group_by), digits)


def ablation_table(runs: list[Run], finished_only: bool = True, digits: int = 2) -> pd.DataFrame:
    """The component ablation: rows base, +IDTS, +LATF, full (AdaKD) for each base
    (divergence, regime, indicator …), from runs whose LATF is "off"/"adaptive" and IDTS
    "off"/"on" (other schedules are left out). Columns: "component", "method", datasets…,
    "average", "n_seeds", "Δ average" (mean average minus the base row's, signed)."""
    chosen, components, bases = [], {}, {}
    for run in runs:
        key = (run.config.get("latf", "adaptive"), run.config.get("idts", "on"))
        if not run.config or key not in COMPONENTS:
            continue
        label = method_label(run.config)
        chosen.append(run)
        components[label] = COMPONENTS[key]
        bases[label] = method_label({**run.config, "latf": "off", "idts": "off"})
    long = results_frame(chosen, ("method",), finished_only, references=False)
    columns = ["component", "method"]
    if long.empty:
        return pd.DataFrame(columns=[*columns, "average", "n_seeds", "Δ average"])
    wide = _widen(long, ("method",), digits)
    wide.insert(0, "component", wide["method"].map(components))
    averages = long[long["dataset"] == "average"].set_index("method")["mean"]
    base_average = {bases[m]: averages.get(m) for m, c in components.items() if c == "base"}
    delta = []
    for method in wide["method"]:
        reference = base_average.get(bases[method])
        value = averages.get(method)
        delta.append("" if reference is None or value is None or pd.isna(value) else f"{value - reference:+.{digits}f}")
    wide["Δ average"] = delta
    base_rank = {b: i for i, b in enumerate(dict.fromkeys(bases[m] for m in wide["method"]))}
    wide["_base"] = wide["method"].map(lambda m: base_rank[bases[m]])
    wide["_component"] = wide["component"].map(COMPONENT_ORDER.index)
    wide = wide.sort_values(["_base", "_component"], kind="stable")
    return wide.drop(columns=["_base", "_component"]).reset_index(drop=True)


def arm_labels(table: str) -> dict[str, str]:
    """arm name -> method_label of the arm's config, for a table of ``adakd.presets.TABLES``."""
    if table not in TABLES:
        raise ValueError(f"unknown paper table {table!r}; valid: {', '.join(TABLES)}")
    defaults = RunConfig().to_dict()
    return {arm: method_label({**defaults, **fields}) for arm, fields in TABLES[table].items()}


def table_arm(config: dict, table: str) -> str | None:
    """The arm of ``table`` whose method a run config is (same ``method_label``), or None.

    Methods, not settings, decide: a CTKD run is never the fixed-τ arm, rkl + IDTS never the
    AdaKD arm. A method that is the "ours" row of several tables belongs to each of them."""
    label = method_label(config)
    return next((arm for arm, arm_label in arm_labels(table).items() if arm_label == label), None)


def paper_table(runs: list[Run], table: str, finished_only: bool = True, digits: int = 2) -> pd.DataFrame:
    """One row per arm of the paper's ``table`` that has runs, in the table's arm order:
    [arm, method, datasets…, average, n_seeds] with "mean ± std" over the arm's runs (seeds).
    Runs of other methods are left out, so no two methods are ever pooled into one row."""
    labels = arm_labels(table)
    chosen = [run for run in runs if run.config and table_arm(run.config, table) is not None]
    long = results_frame(chosen, ("method",), finished_only, references=False)
    if long.empty:
        return pd.DataFrame(columns=["arm", "method", "average", "n_seeds"])
    wide = _widen(long, ("method",), digits)
    arm_of = {label: arm for arm, label in reversed(list(labels.items()))}  # the first arm of a label
    order = {arm: i for i, arm in enumerate(labels)}
    wide.insert(0, "arm", wide["method"].map(arm_of))
    wide = wide.sort_values("arm", key=lambda arms: arms.map(order), kind="stable")
    return wide.reset_index(drop=True)


def _reference_rows(runs: list[Run], group_by: tuple, finished_only: bool) -> list[dict]:
    rows, seen = [], set()
    for model, name in REFERENCE_MODELS.items():
        for run in runs:
            if finished_only and run.state != "finished":
                continue
            if (model, run.seed) in seen:
                continue
            final = run.final_eval(model)
            if final.empty:
                continue
            seen.add((model, run.seed))
            keys = {key: (name if i == 0 else "") for i, key in enumerate(group_by)}
            for dataset, score in zip(final["dataset"], final["rouge_l"], strict=True):
                rows.append({**keys, "dataset": dataset, "score": float(score)})
    return rows


def _dataset_order(datasets: pd.Series) -> list[str]:
    order = [d for d in dict.fromkeys(datasets) if d != "average"]
    return order + ["average"] if "average" in set(datasets) else order


def _widen(long: pd.DataFrame, group_by: tuple, digits: int) -> pd.DataFrame:
    """Long results -> one row per group (in the long frame's order), one column per dataset."""
    datasets = _dataset_order(long["dataset"]) if not long.empty else ["average"]
    rows = []
    for keys, part in long.groupby(list(group_by), sort=False, dropna=False):
        row = dict(zip(group_by, keys if isinstance(keys, tuple) else (keys,), strict=True))
        cells = {
            d: _cell(m, sd, n, digits)
            for d, m, sd, n in zip(part["dataset"], part["mean"], part["std"], part["n_seeds"], strict=True)
        }
        row.update({d: cells.get(d, "") for d in datasets})
        row["n_seeds"] = int(part["n_seeds"].max())
        rows.append(row)
    return pd.DataFrame(rows, columns=[*group_by, *datasets, "n_seeds"])


def _cell(mean: float, std: float, n: int, digits: int) -> str:
    if pd.isna(mean):
        return ""
    if n > 1 and not pd.isna(std):
        return f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"{mean:.{digits}f}"
