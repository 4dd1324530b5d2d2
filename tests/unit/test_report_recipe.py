"""The report compares only runs of one recipe (analysis/report/study.py)."""

from __future__ import annotations

from analysis.report.study import collect_study, recipe_differences, split_by_recipe
from analysis.runs import clear_cache, load_run
from tests.rundir_factory import make_run, make_sweep


def test_the_most_common_recipe_is_the_study_and_a_longer_run_is_kept_apart(tmp_path):
    make_sweep(
        tmp_path,
        "ablation",
        {
            "seed=0,base": {"seed": 0, "latf": "off", "idts": "off"},
            "seed=0,full": {"seed": 0},
            "seed=1,base": {"seed": 1, "latf": "off", "idts": "off"},
        },
        steps=20,
    )
    make_run(tmp_path / "curve", "base-long", config={"latf": "off", "idts": "off", "eval_seeds": 1}, steps=40)
    clear_cache()
    study = collect_study(tmp_path)
    assert sorted(r.name for r in study.runs) == ["seed=0,base", "seed=0,full", "seed=1,base"]
    assert [r.name for r in study.other_recipes] == ["base-long"]
    # only the study's runs are arms of its tables
    assert all(r.name != "base-long" for r in study.ablation)
    reason = recipe_differences(study.other_recipes[0], study.runs[0])
    assert reason == "max_steps 40 (study: 20), eval_seeds 1 (study: 3)"


def test_seeds_and_method_settings_do_not_split_a_study(tmp_path):
    paths = [
        make_run(tmp_path, "a", config={"seed": 0, "divergence": "fkl", "idts_c": 0.9}),
        make_run(tmp_path, "b", config={"seed": 7, "latf": "cosine", "regime": "gkd"}),
    ]
    clear_cache()
    runs = [load_run(p) for p in paths]
    assert split_by_recipe(runs) == (runs, [])


def test_a_tie_goes_to_the_earliest_runs_recipe(tmp_path):
    paths = [make_run(tmp_path, "a", config={"lr": 1e-4}), make_run(tmp_path, "b", config={"lr": 3e-4})]
    clear_cache()
    first, second = (load_run(p) for p in paths)
    assert split_by_recipe([first, second]) == ([first], [second])
    assert split_by_recipe([second, first]) == ([second], [first])
    assert split_by_recipe([]) == ([], [])


def test_no_named_grid_arm_changes_the_recipe():
    """An arm that set a recipe field (lr, max_steps, ...) would be split out of its own study."""
    from adakd.training.sweep import NAMED_GRIDS
    from analysis.report.study import RECIPE_FIELDS

    touching = {(grid, arm, key) for grid, arms in NAMED_GRIDS.items() for arm, o in arms.items() for key in o}
    assert {t for t in touching if t[2] in RECIPE_FIELDS} == set()
    assert touching  # the grids were read


def test_a_fine_tuned_teacher_is_another_recipe_and_the_setup_says_how_it_was_tuned(tmp_path):
    from analysis.report.setup_sections import teacher_sft_text

    paths = [
        make_run(tmp_path, "plain", config={"seed": 0}),
        make_run(tmp_path, "tuned", config={"seed": 0, "teacher_sft_steps": 300, "teacher_sft_lr": 5e-5}),
    ]
    clear_cache()
    plain, tuned = (load_run(p) for p in paths)
    assert split_by_recipe([plain, tuned]) == ([plain], [tuned])
    assert recipe_differences(tuned, plain) == "teacher_sft_steps 300 (study: 0)"
    record = {"teacher_sft": {"first_loss": 2.164, "last_loss": 1.931}}
    text = teacher_sft_text({"teacher_sft_steps": 300, "teacher_sft_lr": 5e-5}, record)
    assert "fine-tuned first** on the training replies for 300 steps at lr 5e-05" in text
    assert "2.164 at its first step, 1.931 at its last" in text
    assert teacher_sft_text({"teacher_sft_steps": 0}, record) == "."


def test_a_study_says_where_it_differs_from_todays_demo(tmp_path):
    from adakd.config import RunConfig
    from adakd.presets import PRESETS
    from analysis.report.study import differences_from_preset

    demo = RunConfig.from_dict(dict(PRESETS["demo"])).to_dict()
    paths = [
        make_run(tmp_path, "now", config=demo),
        make_run(tmp_path, "then", config={**demo, "teacher_sft_steps": 0}),
    ]
    clear_cache()
    now, then = (load_run(p) for p in paths)
    assert differences_from_preset(now) == ""
    assert differences_from_preset(then) == f"teacher_sft_steps 0 (demo: {demo['teacher_sft_steps']})"
