"""Rebuilding a run's trained student from its config.json (adakd/training/rebuild.py): the weights equal
the checkpoint the run itself wrote, bit for bit, on this machine."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from adakd.cli import main
from adakd.presets import resolve_preset
from adakd.training.rebuild import estimated_seconds, rebuild_folder, rebuild_student, rebuilt_checkpoint
from adakd.training.trainer import train

pytestmark = pytest.mark.slow


def test_rebuilt_student_equals_the_deleted_checkpoint(tmp_path, isolated_cache):
    # probes and evaluation on in the original: the rebuild turns them off and must still match
    run = train(
        resolve_preset(
            "smoke",
            [
                "max_steps=3",
                "probe_interval=2",
                "eval_examples=2",
                "eval_min_reference_words=0",
                "eval_max_new_tokens=2",
            ],
        ),
        tmp_path / "run",
    )
    original = load_file(str(next((run / "checkpoints").glob("step-*")) / "model.safetensors"))
    shutil.rmtree(run / "checkpoints")  # as in a shipped sample run
    assert rebuilt_checkpoint(run) is None and estimated_seconds(run) > 0

    from analysis.run_student import load_student_checkpoint, run_checkpoints

    assert run_checkpoints(run) == []
    folder = rebuild_student(run)
    rebuilt = load_file(str(folder / "model.safetensors"))
    assert rebuilt.keys() == original.keys()
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)
    step, _, report = rebuilt_checkpoint(run)
    assert step == 3 and report["steps_compared"] == 3 and report["max_loss_difference"] == 0.0
    # the explorer's loader treats it as the run's own checkpoint
    assert run_checkpoints(run) == [3]
    weights = load_student_checkpoint(run).state_dict()
    assert all(torch.equal(weights[k], original[k]) for k in original)
    # a second call is instant (already built); the CLI prints where it is
    assert rebuild_student(run) == folder
    assert main(["rebuild", str(run), "--quiet"]) == 0
    assert rebuild_folder(run).is_dir() and not list(rebuild_folder(run).parent.glob(".rebuild-*"))


def test_rebuild_refuses_a_folder_without_config(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "status.json").write_text("{}")
    assert main(["rebuild", str(tmp_path / "empty")]) == 2
    assert "config.json is missing or unreadable" in capsys.readouterr().err
