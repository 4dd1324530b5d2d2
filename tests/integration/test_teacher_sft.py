"""The fine-tuned teacher (adakd/training/teacher_sft.py): built once per recipe, shared by every arm
and seed, really fine-tuned, and the student is still built from the teacher as loaded.

A tiny random Llama over the real SmolLM2 tokenizer, saved as a folder, stands in for the teacher
(the embedded 135 M teacher would take minutes to fine-tune here)."""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import pytest
import torch

from adakd.config import RunConfig
from adakd.presets import PRESETS


@pytest.fixture
def teacher_folder(tmp_path, tokenizer):
    from adakd.models.loading import tiny_random_llama

    folder = tmp_path / "tiny-teacher"
    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    tiny_random_llama(len(tokenizer), layers=2, hidden=64, seed=1, **ids).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _config(teacher_folder, **overrides) -> RunConfig:
    settings = {
        **PRESETS["smoke"],
        "teacher": str(teacher_folder),
        "student": "subset",
        "student_layers": [0],
        "teacher_sft_steps": 4,
        "teacher_sft_lr": 3e-3,
        "max_steps": 2,
        "probe_interval": 0,
        "checkpoint_interval": 0,
        **overrides,
    }
    return RunConfig.from_dict(settings)


def _reply_ce(model, config: RunConfig, tokenizer) -> float:
    """Mean cross-entropy of ``model`` on the first 16 training replies."""
    from adakd.data.tokenize import collate
    from adakd.training.runsetup import _encode_all, data_splits, pad_token_id

    train, _, _ = data_splits(config)
    batch = collate(_encode_all(train[:16], tokenizer, config), pad_token_id(tokenizer))
    with torch.no_grad():
        return float(
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        )


def test_recipe_holds_only_what_changes_the_teacher(teacher_folder):
    from adakd.training.teacher_sft import sft_recipe, sft_teacher_folder

    base = _config(teacher_folder)
    arms = [
        _config(teacher_folder, seed=3),
        _config(teacher_folder, idts="on", latf="adaptive", divergence="fkl"),
        _config(teacher_folder, max_steps=5, lr=1e-2),
    ]
    assert all(sft_recipe(arm) == sft_recipe(base) for arm in arms)
    assert all(sft_teacher_folder(arm) == sft_teacher_folder(base) for arm in arms)
    for changed in (_config(teacher_folder, teacher_sft_steps=5), _config(teacher_folder, max_train_examples=32)):
        assert sft_teacher_folder(changed) != sft_teacher_folder(base)


def test_tiny_random_teacher_is_refused_with_one_line():
    with pytest.raises(ValueError, match="teacher_sft_steps > 0 needs a teacher from a folder"):
        RunConfig.from_dict({**PRESETS["smoke"], "teacher_sft_steps": 3})


def test_fine_tuned_teacher_is_built_once_and_distilled_from(
    teacher_folder, tokenizer, isolated_cache, tmp_path, caplog
):
    from adakd.models.loading import load_teacher
    from adakd.runs.rundir import read_json, read_jsonl
    from adakd.training.rebuild import estimated_seconds
    from adakd.training.runsetup import build_models
    from adakd.training.teacher_sft import RECIPE_FILE, sft_teacher_folder
    from adakd.training.trainer import train
    from analysis.run_student import load_student_checkpoint

    config = _config(teacher_folder, student="random", random_layers=1, random_hidden=32)
    folder = sft_teacher_folder(config)
    # the first run fine-tunes the teacher inside its own set-up (after seeding) ...
    with caplog.at_level(logging.INFO, logger="adakd.training.teacher_sft"):
        first = train(config, tmp_path / "first")
    assert any("teacher fine-tuning: step 4/4" in r.getMessage() for r in caplog.records)
    built = json.loads((folder / RECIPE_FILE).read_text())
    assert built["steps"] == 4 and built["last_loss"] < built["first_loss"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".") or ".tmp-" in p.name]  # no leftovers
    # ... the second finds it cached, and both took the same steps
    stamp = (folder / RECIPE_FILE).stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adakd.training.teacher_sft"):
        second = train(config, tmp_path / "second")
    assert not any("teacher fine-tuning" in r.getMessage() for r in caplog.records)
    assert (folder / RECIPE_FILE).stat().st_mtime_ns == stamp
    losses = [[r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r] for run in (first, second)]
    assert losses[0] and losses[0] == losses[1]
    recorded = read_json(second / "config.json")["teacher_sft"]
    assert recorded["folder"] == folder.name and recorded["steps"] == 4

    torch.manual_seed(config.seed)  # as the trainer seeds before it builds the models
    teacher, student, _ = build_models(config, torch.device("cpu"))
    loaded, _ = load_teacher(str(teacher_folder))
    # the run distils from the fine-tuned teacher, which fits the training replies better ...
    assert _reply_ce(teacher, config, tokenizer) < _reply_ce(loaded, config, tokenizer) - 0.05
    embed = "model.embed_tokens.weight"
    assert not torch.equal(teacher.state_dict()[embed], loaded.state_dict()[embed])
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    # ... and the explorer rebuilds the run's initial student exactly as training built it
    rebuilt = load_student_checkpoint(second, step=0)
    for name, weight in student.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[name], weight), name

    # the rebuild estimate adds the fine-tuning only while that teacher is not cached
    training = estimated_seconds(second)
    folder.rename(folder.with_name("moved-away"))
    assert estimated_seconds(second) == pytest.approx(training + recorded["seconds"])


def test_subset_student_is_cut_from_the_teacher_as_loaded(teacher_folder, isolated_cache):
    from adakd.models.assets import build_once
    from adakd.models.loading import load_teacher
    from adakd.training.runsetup import build_models
    from adakd.training.teacher_sft import RECIPE_FILE, sft_teacher_folder

    config = _config(teacher_folder)
    loaded, tokenizer = load_teacher(str(teacher_folder))
    fake = loaded.state_dict()["model.embed_tokens.weight"].clone()

    def other_teacher(out):  # stands in for a fine-tuned copy: the same model with other weights
        with torch.no_grad():
            loaded.get_input_embeddings().weight.mul_(2.0)
        loaded.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / RECIPE_FILE).write_text("{}")

    build_once(sft_teacher_folder(config), other_teacher, manifest=RECIPE_FILE)
    teacher, student, _ = build_models(config, torch.device("cpu"))
    embed = "model.embed_tokens.weight"
    assert torch.equal(student.state_dict()[embed], fake)
    assert torch.equal(teacher.state_dict()[embed], 2.0 * fake)


def test_cli_teacher_builds_or_finds_the_folder_and_refuses_nothing_to_do(teacher_folder, isolated_cache, capsys):
    from adakd.cli import main
    from adakd.training.teacher_sft import RECIPE_FILE, sft_teacher_folder

    settings = [f"teacher={teacher_folder}", "student=subset", "student_layers=0", "teacher_sft_lr=3e-3"]
    assert main(["teacher", "--preset", "smoke", "--quiet", "--set", *settings, "teacher_sft_steps=0"]) == 2
    assert "teacher_sft_steps is 0" in capsys.readouterr().err
    torch.manual_seed(123)
    before = torch.get_rng_state(), random.getstate()
    assert main(["teacher", "--preset", "smoke", "--quiet", "--set", *settings, "teacher_sft_steps=2"]) == 0
    # the fine-tuning seeded and drew from the global generators; a run that called it must not notice
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    config = _config(teacher_folder, teacher_sft_steps=2)
    assert printed == str(sft_teacher_folder(config)) and (sft_teacher_folder(config) / RECIPE_FILE).is_file()


def test_data_parallel_run_does_not_fine_tune_inside_the_launch(teacher_folder, isolated_cache, monkeypatch):
    from adakd.training.teacher_sft import distillation_teacher, sft_teacher_folder

    monkeypatch.setenv("WORLD_SIZE", "2")
    config = _config(teacher_folder)
    with pytest.raises(ValueError, match="build it in one process first with `python -m adakd teacher`"):
        distillation_teacher(config)
    assert not sft_teacher_folder(config).exists()


def test_cli_teacher_builds_the_teacher_of_a_run_folder(teacher_folder, isolated_cache, tmp_path, capsys):
    """`adakd teacher --run RUN`: the teacher a run's config.json needs (e.g. a sample run's on a
    fresh machine); --run with --preset is refused in one line."""
    from adakd.cli import main
    from adakd.training.teacher_sft import sft_teacher_folder, teacher_to_build

    config = _config(teacher_folder, teacher_sft_steps=2)
    run = tmp_path / "runs" / "a-run"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": config.to_dict()}))
    assert teacher_to_build(config) == sft_teacher_folder(config)
    assert main(["teacher", "--run", str(run), "--preset", "smoke"]) == 2
    assert "leave out --preset and --set" in capsys.readouterr().err
    assert main(["teacher", "--run", str(run), "--quiet"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(sft_teacher_folder(config))
    assert teacher_to_build(config) is None
    assert teacher_to_build(_config(teacher_folder, teacher_sft_steps=0)) is None  # nothing to fine-tune


def test_explorer_says_the_first_analyse_fine_tunes_the_run_teacher(
    teacher_folder, isolated_cache, tmp_path, monkeypatch
):
    """A run whose fine-tuned teacher this machine has not built: the explorer says so, with the
    command that builds it ahead, before anything is loaded."""
    from streamlit.testing.v1 import AppTest

    from tests.rundir_factory import make_run

    root = tmp_path / "runs"
    config = {**_config(teacher_folder).to_dict(), "teacher_sft_steps": 2}
    run = make_run(root, "sft-run", config=config, steps=2, meta={"teacher_sft": {"folder": "x", "seconds": 600.0}})
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app" / "main.py"), default_timeout=60)
    at.session_state["selected_runs"] = [str(run)]
    at.run()
    at.switch_page("views/explorer.py").run()
    assert not at.exception
    notice = [w.value for w in at.warning if "has not built yet" in w.value]
    assert len(notice) == 1 and "about 10 min" in notice[0] and f'--run "{run}"' in notice[0], notice
