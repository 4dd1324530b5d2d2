"""The finished runs of a sample-runs root, grouped by the paper's tables and figures."""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adakd.config import RunConfig
from analysis.labels import DEFAULTS
from analysis.report.numbers import final_rouge, paired_ce_difference
from analysis.runs import Run, find_runs, load_runs
from analysis.tables import COMPONENTS, arm_labels, table_arm

log = logging.getLogger(__name__)


def collect_runs(root: str | os.PathLike) -> list[Run]:
    """The finished runs under `root` (sweep folders one level down), sorted by path."""
    runs = load_runs(find_runs([Path(root)]))
    for run in runs:
        for problem in run.problems:
            log.warning("%s: %s", run.name, problem)
    return [run for run in runs if run.state == "finished"]


# What every arm of one study shares: the teacher and the starting student, the data, the training
# budget and the evaluation protocol. Runs that differ in any of these belong to another study
# (e.g. a longer run made for the competence curve) and are never compared with its arms. The
# method's own settings (divergence, LATF, IDTS, indicator, regime, ...) and the seed vary by arm.
RECIPE_FIELDS = (
    "teacher",
    "teacher_sft_steps",
    "teacher_sft_lr",
    "student",
    "student_layers",
    "random_layers",
    "random_hidden",
    "student_mlp_keep",
    "pruning_examples",
    "data",
    "eval_data",
    "max_train_examples",
    "max_prompt_length",
    "max_length",
    "optimizer",
    "lr",
    "weight_decay",
    "lr_schedule",
    "warmup_ratio",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_grad_norm",
    "dtype",
    "eval_examples",
    "eval_max_new_tokens",
    "eval_greedy",
    "eval_seed",
    "eval_seeds",
    "eval_holdout",
    "eval_min_reference_words",
)


_RECIPE_DEFAULTS = {key: value for key, value in RunConfig().to_dict().items() if key in RECIPE_FIELDS}


def recipe_values(config: dict) -> dict:
    """A config's RECIPE_FIELDS (fields it lacks at their defaults)."""
    return {key: config.get(key, _RECIPE_DEFAULTS[key]) for key in RECIPE_FIELDS}


def recipe(run: Run) -> str:
    """The run's RECIPE_FIELDS as one comparable string (fields its config lacks at their defaults)."""
    return json.dumps(recipe_values(run.config), sort_keys=True)


def differences_from_preset(run: Run, preset: str = "demo") -> str:
    """ "teacher_sft_steps 0 (demo: 300)": where the run's recipe differs from a preset's today."""
    from adakd.presets import PRESETS

    ours, theirs = recipe_values(run.config), recipe_values(RunConfig.from_dict(dict(PRESETS[preset])).to_dict())
    differing = [key for key in RECIPE_FIELDS if ours[key] != theirs[key]]
    return ", ".join(f"{key} {ours[key]} ({preset}: {theirs[key]})" for key in differing)


def recipe_differences(run: Run, reference: Run) -> str:
    """ "max_steps 1000 (study: 200), eval_seeds 1 (study: 3)": where `run`'s recipe differs."""
    ours, theirs = json.loads(recipe(run)), json.loads(recipe(reference))
    return ", ".join(f"{key} {ours[key]} (study: {theirs[key]})" for key in RECIPE_FIELDS if ours[key] != theirs[key])


def split_by_recipe(runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """(the runs of the most common recipe, every other run), each in the given order. A tie goes
    to the recipe of the earliest run."""
    if not runs:
        return [], []
    counts = Counter(recipe(run) for run in runs)
    first_seen = {key: i for i, key in reversed(list(enumerate(recipe(run) for run in runs)))}
    main = max(counts, key=lambda key: (counts[key], -first_seen[key]))
    return [r for r in runs if recipe(r) == main], [r for r in runs if recipe(r) != main]


def collect_study(root: str | os.PathLike) -> Study:
    """The study under `root`: its finished runs of the most common recipe; the others are logged
    and kept apart in `other_recipes`."""
    runs, others = split_by_recipe(collect_runs(root))
    for run in others:
        log.info("%s: another recipe, kept out of the study's tables: %s", run.name, recipe_differences(run, runs[0]))
    return Study(runs, others)


def _cfg(run: Run, key: str, default=None):
    return run.config.get(key, default)


def _plain_setting(run: Run | dict) -> bool:
    """Ground-truth data, Hellinger indicator, τ_base 1, pure KD, neither CTKD nor logit
    standardisation: the study's common settings (`run` a Run or a RunConfig dict)."""
    config = run if isinstance(run, dict) else run.config
    common = ("regime", "indicator", "base_temperature", "kd_ratio", "ctkd", "logit_standardize")
    return all(config.get(key, DEFAULTS[key]) == DEFAULTS[key] for key in common)


def _c(run: Run) -> float:
    return float(_cfg(run, "idts_c", 0.5))


def component(run: Run) -> str | None:
    """ "base" / "+IDTS" / "+LATF" / "full (AdaKD)" for the ablation arms, else None."""
    return COMPONENTS.get((_cfg(run, "latf", "adaptive"), _cfg(run, "idts", "on")))


@dataclass
class Study:
    """The finished runs of one recipe, grouped by the paper's tables and figures; other_recipes
    holds the finished runs of other recipes under the same root (never compared with `runs`)."""

    runs: list[Run]
    other_recipes: list[Run] = field(default_factory=list)

    def _rkl(self) -> list[Run]:
        return [r for r in self.runs if _cfg(r, "divergence") == "rkl" and _plain_setting(r)]

    @property
    def ablation(self) -> list[Run]:
        """Reverse-KL base / +IDTS / +LATF / full at c = 0.5, every seed."""
        return [r for r in self._rkl() if component(r) is not None and (_cfg(r, "idts") == "off" or _c(r) == 0.5)]

    def arm(self, name: str, seed: int | None = None) -> Run | None:
        """The ablation run of component `name` with the lowest seed (or the given seed)."""
        runs = sorted(
            (r for r in self.ablation if component(r) == name and (seed is None or r.seed == seed)),
            key=lambda r: r.seed or 0,
        )
        return runs[0] if runs else None

    @property
    def full(self) -> Run | None:
        return self.arm("full (AdaKD)")

    def mean_rouge(self, name: str) -> float:
        """Final-student ROUGE-L of ablation component `name`, averaged over its seeds."""
        scores = [final_rouge(r) for r in self.ablation if component(r) == name]
        return float(np.mean(scores)) if scores else math.nan

    def paired_ce_by_seed(self, name: str) -> list[float]:
        """Paired ΔCE (last steps) of component `name` against the base run of the same seed,
        one value per seed that has both."""
        base = {r.seed: r for r in self.ablation if component(r) == "base"}
        values = [
            paired_ce_difference(r, base[r.seed]) for r in self.ablation if component(r) == name and r.seed in base
        ]
        return [v for v in values if math.isfinite(v)]

    @property
    def c_sweep(self) -> list[Run]:
        """Runs with IDTS on and LATF adaptive (reverse KL), any c: Fig. 3c-d."""
        return [r for r in self._rkl() if _cfg(r, "latf") == "adaptive" and _cfg(r, "idts") == "on"]

    @property
    def schedules(self) -> list[Run]:
        """IDTS on at c = 0.5 with LATF adaptive, fixed, linear or cosine r: Table 4."""
        return [
            r
            for r in self._rkl()
            if _cfg(r, "idts") == "on" and _c(r) == 0.5 and _cfg(r, "latf") in ("adaptive", "fixed", "linear", "cosine")
        ]

    def arms(self, table: str) -> list[Run]:
        """The runs that are an arm of the paper's `table` (analysis.tables.table_arm), sorted by
        the table's arm order, then seed."""
        order = {arm: i for i, arm in enumerate(arm_labels(table))}
        chosen = [
            (order[arm], r.seed or 0, i, r)
            for i, r in enumerate(self.runs)
            if (arm := table_arm(r.config, table)) is not None
        ]
        return [r for *_, r in sorted(chosen, key=lambda x: x[:3])]

    @property
    def temperatures(self) -> list[Run]:
        """Table 5: LATF adaptive with fixed τ (1, 0.8, 1.2, e^-0.5), inverse IDTS, CTKD, logit
        standardisation or IDTS (c = 0.5), reverse KL; one arm per method, never pooled."""
        return self.arms("table5")

    @property
    def sft(self) -> list[Run]:
        """The SFT baseline (kd_ratio = 0, no teacher term): a row of Tables 1 and 2."""
        return [r for r in self.runs if table_arm(r.config, "table1") == "sft"]

    @property
    def indicators(self) -> list[Run]:
        """Table 3: full AdaKD (reverse KL, c = 0.5) with each difficulty indicator."""
        return self.arms("table3")

    @property
    def divergences(self) -> list[Run]:
        """Every base divergence and data regime, plain (base) and with AdaKD (full, c = 0.5):
        Table 1."""
        return [
            r
            for r in self.runs
            if _plain_setting({**r.config, "regime": "ground_truth"})
            and component(r) in ("base", "full (AdaKD)")
            and (_cfg(r, "idts") == "off" or _c(r) == 0.5)
        ]
