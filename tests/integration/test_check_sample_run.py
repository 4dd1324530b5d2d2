"""scripts/check_sample_run.py: a run trained again from its config.json records the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.rundir_factory import make_run
from tests.script_loader import load_script


@pytest.fixture(scope="module")
def check():
    return load_script("check_sample_run.py")


def test_identical_copies_have_no_differences(check, tmp_path):
    old = make_run(tmp_path / "a", "run", steps=6, config={"latf": "adaptive"})
    new = Path(shutil.copytree(old, tmp_path / "b" / "run"))
    assert check.differences(old, new) == []


def test_each_recorded_number_is_compared(check, tmp_path):
    old = make_run(tmp_path / "a", "run", steps=6)
    new = Path(shutil.copytree(old, tmp_path / "b" / "run"))
    lines = [json.loads(line) for line in (new / "metrics.jsonl").read_text().splitlines()]
    lines[2]["ce"] += 1e-12  # a last-bit change must show
    lines[3]["step_seconds"] = 99.0  # wall-clock fields are not compared
    (new / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    tokens = pd.read_parquet(new / "tokens.parquet")
    tokens.loc[0, "difficulty"] = 0.123
    tokens.to_parquet(new / "tokens.parquet")
    (new / "gradients.parquet").unlink()
    found = check.differences(old, new)
    assert any(line.startswith("metrics.jsonl step 3  ce:") for line in found), found
    assert not any("step_seconds" in line for line in found)
    assert any(line.startswith("tokens.parquet:") and "difficulty" in line for line in found), found
    assert "gradients.parquet: present in only one run" in found
    assert len(found) == 3


@pytest.mark.slow
def test_a_real_run_trains_again_identically(check, tmp_path, capsys):
    """The trainer end to end on the tiny smoke pair: probes, evaluation and the LATF ratio."""
    from adakd.presets import resolve_preset
    from adakd.training.trainer import train

    config = resolve_preset(
        "smoke",
        [
            "max_steps=6",
            "checkpoint_interval=0",
            "eval_examples=2",
            "eval_max_new_tokens=4",
            "latf=adaptive",
            "latf_warmup=0",
        ],
    )
    run = train(config, tmp_path / "original")
    assert check.main([str(run)]) == 0
    assert "identical: metrics, probes" in capsys.readouterr().out


def test_replies_of_another_sampler_are_not_compared_but_their_cross_entropy_is(check, tmp_path):
    old = make_run(tmp_path / "a", "run", steps=6)
    new = Path(shutil.copytree(old, tmp_path / "b" / "run"))
    record = {"step": 6, "model": "student", "rouge_l_avg": 10.0, "ce_avg": 3.5, "decoding": {"greedy": False}}
    (old / "eval.jsonl").write_text(json.dumps(record) + "\n")
    newer = dict(record, rouge_l_avg=11.0, decoding={"greedy": False, "sampler": "row-seeded"})
    (new / "eval.jsonl").write_text(json.dumps(newer) + "\n")
    notes: list[str] = []
    assert check.differences(old, new, notes) == []
    assert len(notes) == 1 and "replies not compared" in notes[0] and "row-seeded" in notes[0]
    (new / "eval.jsonl").write_text(json.dumps(dict(newer, ce_avg=3.6)) + "\n")
    assert any("ce_avg" in line for line in check.differences(old, new))
    (new / "eval.jsonl").write_text(json.dumps(dict(record, rouge_l_avg=11.0)) + "\n")  # same sampler
    assert any("rouge_l_avg" in line for line in check.differences(old, new))
