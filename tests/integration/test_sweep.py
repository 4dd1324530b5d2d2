"""Sweeps: grid parsing and naming (unit), the manifest state machine (fake point commands),
and one real sweep of the smoke preset (two subprocess runs, then a resume that skips them)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adakd.runs.rundir import RunDir, read_json
from adakd.training import sweep
from adakd.training.sweep import expand_grid, parse_grid, run_sweep


# ---------------------------------------------------------------------- parse_grid
def test_parse_grid_plain_fields_in_order():
    grid = parse_grid(["idts_c=0.1,0.3,0.5", "seed=0,1"])
    assert grid == {"idts_c": ["0.1", "0.3", "0.5"], "seed": ["0", "1"]}
    assert list(grid) == ["idts_c", "seed"]


def test_parse_grid_unknown_field_lists_valid_fields():
    with pytest.raises(ValueError, match="unknown config field.*'c'.*valid fields:.*idts_c"):
        parse_grid(["c=0.1,0.3"])


def test_parse_grid_bad_value_type_names_field():
    with pytest.raises(ValueError, match="seed='x'"):
        parse_grid(["seed=0,x"])


@pytest.mark.parametrize("spec", ["seed", "seed=", "seed=0,,1", "seed=1,1"])
def test_parse_grid_rejects_malformed(spec):
    with pytest.raises(ValueError):
        parse_grid([spec])


def test_parse_grid_rejects_repeated_axis():
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["seed=0", "seed=1"])


def test_parse_grid_list_field_takes_json_values():
    grid = parse_grid(["student_layers=[0,29],[0,10,29]"])
    assert grid == {"student_layers": ["[0,29]", "[0,10,29]"]}


def test_ablation_named_grid_is_the_four_arms():
    grid = parse_grid(["ablation"])
    points = dict(expand_grid(grid))
    assert points == {
        "ablation=base": {"latf": "off", "idts": "off"},
        "ablation=idts": {"latf": "off", "idts": "on"},
        "ablation=latf": {"latf": "adaptive", "idts": "off"},
        "ablation=full": {"latf": "adaptive", "idts": "on"},
    }
    assert parse_grid(["ablation=base,full"]) == {"ablation": ["base", "full"]}
    with pytest.raises(ValueError, match="valid: base, idts, latf, full"):
        parse_grid(["ablation=nope"])


def test_expand_grid_is_cartesian_product_with_deterministic_names():
    points = expand_grid(parse_grid(["ablation=base,full", "seed=0,1,2"]))
    assert len(points) == 6
    assert [n for n, _ in points][:3] == ["ablation=base,seed=0", "ablation=base,seed=1", "ablation=base,seed=2"]
    assert points[4][1] == {"latf": "adaptive", "idts": "on", "seed": "1"}


def test_expand_grid_rejects_axes_setting_the_same_field():
    with pytest.raises(ValueError, match="'latf' twice"):
        expand_grid(parse_grid(["ablation", "latf=off"]))


def test_path_values_give_safe_unique_names():
    points = expand_grid({"data": ["/a/dolly.jsonl", "/b/dolly.jsonl", "/c/alpaca data.json"]})
    names = [n for n, _ in points]
    assert names == ["data=dolly.jsonl", "data=dolly.jsonl-2", "data=alpaca-data.json"]
    assert points[1][1] == {"data": "/b/dolly.jsonl"}


def test_run_sweep_validates_every_point_before_running(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "_run_point", lambda *a, **k: pytest.fail("nothing may run"))
    with pytest.raises(ValueError, match="idts_c = 20.0 is out of range"):
        run_sweep("smoke", ["idts_c=0.5,20"], [], tmp_path, "s")
    with pytest.raises(ValueError, match="both a base override and varied"):
        run_sweep("smoke", ["seed=0,1"], ["seed=3"], tmp_path, "s")
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------- manifest state machine
def _fake_point(script: str):
    """Replace the point command by a tiny Python script that writes the run dir itself.
    `script` sees `run` (the run folder) and `action` ("train" | "resume")."""

    def command(action, run, preset, overrides):
        body = (
            "import json, os, sys, pathlib; run = pathlib.Path(sys.argv[1]); action = sys.argv[2]; "
            "run.mkdir(parents=True, exist_ok=True); (run / 'checkpoints').mkdir(exist_ok=True)\n"
            "def status(state):\n"
            "    (run / 'status.json').write_text(json.dumps({'state': state, 'pid': os.getpid()}))\n" + script
        )
        return [sys.executable, "-c", body, str(run.path), action]

    return command


def test_manifest_records_failures_and_resume_skips_finished(tmp_path, monkeypatch):
    monkeypatch.setattr(
        sweep,
        "_command",
        _fake_point(
            "open(run.parent / 'calls.txt', 'a').write(run.name + ' ' + action + '\\n')\n"
            "if 'seed=1' in run.name and not (run.parent / 'fixed').exists():\n"
            "    status('failed'); sys.exit(1)\n"
            "status('finished')\n"
        ),
    )
    folder = run_sweep("smoke", ["seed=0,1,2"], ["max_steps=2"], tmp_path, "s")
    manifest = read_json(folder / "sweep.json")
    assert manifest["format"] == 1 and manifest["grid"] == {"seed": ["0", "1", "2"]}
    assert [(r["name"], r["state"]) for r in manifest["runs"]] == [
        ("seed=0", "finished"),
        ("seed=1", "failed"),
        ("seed=2", "finished"),
    ]
    assert manifest["runs"][1]["overrides"] == {"seed": "1"}
    assert "exit code 1" in manifest["runs"][1]["error"]

    (folder / "fixed").touch()
    run_sweep("smoke", ["seed=0,1,2"], ["max_steps=2"], tmp_path, "s")
    calls = (folder / "calls.txt").read_text().split("\n")
    # the second sweep ran only the failed point; it had made no checkpoint, so it starts again
    assert calls == ["seed=0 train", "seed=1 train", "seed=2 train", "seed=1 train", ""]
    assert {r["state"] for r in read_json(folder / "sweep.json")["runs"]} == {"finished"}


def test_a_point_recorded_with_another_config_stops_the_sweep_before_anything_runs(tmp_path, monkeypatch):
    """A finished point is skipped only when its config.json is the config the sweep gives now: after
    a preset changes, re-running a study must not mix runs of two recipes under one folder."""
    from adakd.training.sweep import build_config

    monkeypatch.setattr(
        sweep,
        "_command",
        _fake_point("open(run.parent / 'calls.txt', 'a').write(run.name + '\\n')\nstatus('finished')\n"),
    )
    folder = run_sweep("smoke", ["seed=0,1"], ["max_steps=2"], tmp_path, "s")
    for seed in (0, 1):
        config = build_config("smoke", {"max_steps": "2", "seed": str(seed)}).to_dict()
        if seed == 1:
            config["lr"] = 0.5  # as if the preset's lr had changed since the point ran
        config["loss_input"] = "logits"  # the same loss up to rounding: never a difference
        (folder / f"seed={seed}" / "config.json").write_text(json.dumps({"config": config}))
    with pytest.raises(ValueError, match=r"seed=1 was made with another config .*lr 0\.5 \(now 0\.003\)"):
        run_sweep("smoke", ["seed=0,1"], ["max_steps=2"], tmp_path, "s")
    assert (folder / "calls.txt").read_text().split() == ["seed=0", "seed=1"]  # nothing ran again


def test_a_signal_right_after_a_point_finished_records_it_as_finished(tmp_path, monkeypatch):
    """SIGTERM to the process group as the point's run writes "finished": the sweep ends, and its
    manifest says finished for that point (it said "stopped", and the report counted it missing)."""
    from adakd.runs.rundir import RunDir

    def finish_then_interrupt(command):
        run = RunDir(Path(command[command.index("--run-dir") + 1]))
        run.create()
        run.set_status("finished", step=2, total_steps=2)
        raise KeyboardInterrupt  # what _sigterm_as_interrupt turns the signal into

    monkeypatch.setattr(sweep, "_run_point", finish_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("smoke", ["seed=0,1"], ["max_steps=2"], tmp_path, "s")
    states = [(r["name"], r["state"]) for r in read_json(tmp_path / "s" / "sweep.json")["runs"]]
    assert states == [("seed=0", "finished"), ("seed=1", "pending")]


def test_resume_uses_checkpoint_and_stop_ends_the_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(
        sweep,
        "_command",
        _fake_point(
            "open(run.parent / 'calls.txt', 'a').write(run.name + ' ' + action + '\\n')\n"
            "(run / 'checkpoints' / 'step-000001').mkdir(exist_ok=True)\n"
            "status('stopped' if action == 'train' and 'seed=0' in run.name else 'finished')\n"
        ),
    )
    folder = run_sweep(None, ["seed=0,1"], [], tmp_path, "s")
    states = [r["state"] for r in read_json(folder / "sweep.json")["runs"]]
    assert states == ["stopped", "pending"]  # a stopped point ends the sweep
    run_sweep(None, ["seed=0,1"], [], tmp_path, "s")
    assert (folder / "calls.txt").read_text().split() == ["seed=0", "train", "seed=0", "resume", "seed=1", "train"]
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(None, ["seed=0,1,2"], [], tmp_path, "s")
    with pytest.raises(ValueError, match="different sweep"):
        run_sweep(None, ["seed=0,1"], ["lr=0.5"], tmp_path, "s")
    # spelling out a default is the same sweep: it resumes (nothing left to run)
    run_sweep(None, ["seed=0,1"], ["lr=0.0001"], tmp_path, "s")
    assert len((folder / "calls.txt").read_text().split()) == 6


def test_sigterm_stops_the_point_cleanly_and_ends_the_sweep(tmp_path):
    """SIGTERM to the sweep process (as the dashboard stops it): the running point is asked to
    stop, records "stopped" itself, the manifest says stopped, later points stay pending."""
    script = f"""
import sys, time
from adakd.training import sweep
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_sweep import _fake_point
sweep._command = _fake_point(
    "import signal, time\\n"
    "def stop(*a):\\n"
    "    status('stopped'); sys.exit(0)\\n"
    "signal.signal(signal.SIGTERM, stop)\\n"
    "status('running'); (run.parent / 'started').touch(); time.sleep(60)\\n")
sweep.run_sweep(None, ["seed=0,1"], [], {str(tmp_path)!r}, "s")
"""
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    folder = tmp_path / "s"
    deadline = time.monotonic() + 60
    while not (folder / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep did not start its first point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0  # interrupted
    assert [r["state"] for r in read_json(folder / "sweep.json")["runs"]] == ["stopped", "pending"]
    assert RunDir(folder / "seed=0").read_status()["state"] == "stopped"


# ---------------------------------------------------------------------- the real thing
@pytest.mark.slow
def test_smoke_sweep_writes_one_run_per_point_and_a_manifest(tmp_path, monkeypatch):
    overrides = ["max_steps=2", "probe_interval=0", "checkpoint_interval=0", "eval_examples=0"]
    folder = run_sweep("smoke", ["idts_c=0.1,0.9"], overrides, tmp_path, "c-sweep")
    manifest = read_json(folder / "sweep.json")
    assert [(r["name"], r["state"]) for r in manifest["runs"]] == [
        ("idts_c=0.1", "finished"),
        ("idts_c=0.9", "finished"),
    ]
    runs = sorted(p.name for p in folder.iterdir() if p.is_dir())
    assert runs == ["idts_c=0.1", "idts_c=0.9"]
    for name, c in (("idts_c=0.1", 0.1), ("idts_c=0.9", 0.9)):
        run = RunDir(folder / name)
        config = run.read_config()["config"]
        assert config["idts_c"] == c and config["max_steps"] == 2
        assert run.effective_state() == "finished"
        assert len(run.read_metrics()) == 2

    monkeypatch.setattr(sweep, "_run_point", lambda *a, **k: pytest.fail("finished points must be skipped"))
    run_sweep("smoke", ["idts_c=0.1,0.9"], overrides, tmp_path, "c-sweep")
    resumed = json.loads((folder / "sweep.json").read_text())
    assert resumed["runs"][1]["state"] == "finished"
    assert resumed["runs"] == manifest["runs"]  # skipped points keep the time they finished
