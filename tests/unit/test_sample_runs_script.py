"""scripts/make_sample_runs.sh: the sweeps it runs, for the demo and for another preset (PY=echo
prints each command instead of training)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_sample_runs.sh"
STUDIES = {
    "ablation": ["ablation"],
    "curve": ["competence-curve"],
    "components": ["ablation-components"],
    "c-sweep": ["c-sweep"],
    "schedules": ["schedule-fixed", "schedule-cosine"],
    "divergences": ["divergences"],
    "table1": ["table1"],
    "sft": ["sft"],
    "table3": ["table3"],
    "table4": ["table4"],
    "table5": ["table5"],
}


def run(tmp_path, *studies, **env):
    for folders in STUDIES.values():  # the script cleans each sweep folder after the sweep
        for folder in folders:
            (tmp_path / folder).mkdir(exist_ok=True)
    return subprocess.run(
        ["bash", str(SCRIPT), *studies],
        capture_output=True,
        text=True,
        env={**os.environ, "PY": "echo", "ROOT": str(tmp_path), **env},
    )


def commands(result) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("-m adakd sweep")]


def test_every_study_runs_one_demo_sweep_per_folder(tmp_path):
    result = run(tmp_path)
    assert result.returncode == 0, result.stderr
    lines = commands(result)
    names = [line.split("--name ")[1].split()[0] for line in lines]
    assert names == [n for folders in STUDIES.values() for n in folders]
    assert all("--preset demo" in line and "--set data" not in line for line in lines)
    ablation = next(line for line in lines if "--name ablation " in line)
    assert "--grid seed=0,1,2 --grid ablation=base,full" in ablation  # complete pairs first
    table1 = next(line for line in lines if "--name table1" in line)
    assert "--grid table1=gkd,gkd-adakd,distillm,distillm-adakd" in table1
    curve = next(line for line in lines if "--name competence-curve" in line)
    assert curve.endswith("--grid ablation=base --set max_steps=1000 eval_interval=100 eval_seeds=1")
    table5 = next(line for line in lines if "--name table5" in line)
    assert "--grid table5=fixed-0.8,fixed-1.2,fixed-e-0.5,inverse,ctkd,logit-std" in table5


def test_another_preset_and_overrides_reach_every_sweep(tmp_path):
    result = run(tmp_path, "ablation", "schedules", PRESET="gpt2-dolly", SET="data=data/dolly.jsonl max_steps=300")
    assert result.returncode == 0, result.stderr
    lines = commands(result)
    assert len(lines) == 3
    for line in lines:
        assert "--preset gpt2-dolly" in line and "--set data=data/dolly.jsonl max_steps=300" in line
    # a study's own --set comes after the shared one (later values win in adakd's CLI)
    assert lines[2].endswith("--grid latf=cosine --set ratio_start=1.0 ratio_end=0.75")


def test_an_unknown_study_is_refused(tmp_path):
    result = run(tmp_path, "ablaton")
    assert result.returncode == 2
    assert (
        "unknown study ablaton (ablation, curve, components, c-sweep, schedules, divergences, table1, sft, "
        "table3, table4, table5)"
    ) in result.stderr
