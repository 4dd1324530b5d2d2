"""The dashboard's job queue (app/jobs.py) and Train form (app/train_form.py), without Streamlit.

Jobs here are real processes (small Python scripts standing in for the trainer: they create
their run directory, print, and handle SIGTERM like the trainer does), so queueing, process
groups, log linking and stopping are exercised for real, in about a second each.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from adakd.config import RunConfig
from adakd.presets import PRESETS
from app import jobs
from app.train_form import build_request, overrides_from, parse_extra, sweep_args

# A stand-in trainer: creates the run dir like RunDir.create (refusing a non-empty one),
# writes config.json, prints, then waits; SIGTERM -> prints and exits 3.
FAKE = """
import os, sys, time, signal, pathlib
d = pathlib.Path(sys.argv[1])
if d.exists() and any(d.iterdir()):
    print('run directory not empty', flush=True); sys.exit(2)
d.mkdir(parents=True, exist_ok=True)
(d / 'config.json').write_text('{}')
signal.signal(signal.SIGTERM, lambda *a: (print('stopping cleanly', flush=True), sys.exit(3)))
print('training', os.getpid(), flush=True)  # after the handler: 'training' means a stop is handled
time.sleep(float(sys.argv[2]) if len(sys.argv) > 2 else 30)
print('done', flush=True)
"""


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return False


def fake(run_dir: Path, seconds: float = 30) -> list[str]:
    return [sys.executable, "-c", FAKE, str(run_dir), str(seconds)]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def root(tmp_path):
    yield tmp_path
    for job in jobs.list_jobs(tmp_path):  # never leave a process behind
        jobs.stop(tmp_path, job, signal.SIGKILL)


def state_of(root, job):
    found = [j for j in jobs.list_jobs(root, include_exited=True) if j.id == job.id]
    return found[0].state if found else None


def test_one_job_per_device_the_next_waits_then_starts(root):
    a = jobs.submit(root, "train", [], root / "a", "testdev", argv=fake(root / "a"))
    b = jobs.submit(root, "train", [], root / "b", "testdev", argv=fake(root / "b", 0.2))
    wait_for(lambda: state_of(root, a) == "running", what="a running")
    # "running" is the job's state, set before the stand-in has installed its SIGTERM handler
    wait_for(lambda: "training" in _text(root / "a" / "train.log"), what="a's handler installed")
    # b's launcher has polled and found the device taken (it says so once): b must still wait
    wait_for(lambda: "queued: waiting for the device" in _text(Path(b.staging)), what="b's launcher polled")
    assert state_of(root, b) == "queued"
    live = jobs.list_jobs(root)
    assert [j.name for j in live] == ["a", "b"]
    message = jobs.queue_message(live[1], live)
    assert "queued for testdev (position 1)" in message and "`a`" in message
    assert not (root / "b").exists()  # nothing of b ran yet

    assert jobs.stop(root, live[0]) == "stopping"
    wait_for(lambda: state_of(root, a) == "exited", what="a exited")
    ended = next(j for j in jobs.list_jobs(root, include_exited=True) if j.id == a.id)
    assert ended.returncode == 3  # the stand-in's SIGTERM exit: it received the signal
    wait_for(lambda: state_of(root, b) == "exited", what="b ran after a")
    assert "done" in (root / "b" / "train.log").read_text()


def test_other_devices_run_at_the_same_time(root):
    a = jobs.submit(root, "train", [], root / "a", "cuda:1", argv=fake(root / "a"))
    b = jobs.submit(root, "train", [], root / "b", "cpu", argv=fake(root / "b"))
    wait_for(lambda: state_of(root, a) == state_of(root, b) == "running", what="both running")


def test_log_is_linked_into_the_new_run_dir(root):
    job = jobs.submit(root, "train", [], root / "run", "testdev", argv=fake(root / "run", 0.5))
    wait_for(lambda: state_of(root, job) == "exited", what="exit")
    log = (root / "run" / "train.log").read_text()
    # the launcher's line, the process's own output, and the exit line: one file
    assert "[dashboard]" in log and "starting:" in log
    assert "training" in log and "done" in log and "exited with code 0" in log
    assert not Path(job.staging).exists()  # staging name removed once linked


# A stand-in sweep: dies at once on SIGTERM, while its current "training run" (a child in the
# same process group) keeps "checkpointing" after the SIGTERM until the test releases it.
SWEEP = """
import os, subprocess, sys, pathlib
d = pathlib.Path(sys.argv[1])
d.mkdir(parents=True, exist_ok=True)
(d / 'sweep.json').write_text('{}')
(d / 'sweep.pid').write_text(str(os.getpid()))
child = ("import signal, sys, time, pathlib\\n"
         "d = pathlib.Path(sys.argv[1])\\n"
         "def stop(*a):\\n"
         "    (d / 'child-stopping').write_text('x')\\n"
         "    while not (d / 'release').exists(): time.sleep(0.05)\\n"
         "    (d / 'child-done').write_text('x'); sys.exit(0)\\n"
         "signal.signal(signal.SIGTERM, stop)\\n"
         "(d / 'child-started').write_text('x')\\n"
         "time.sleep(60)")
subprocess.run([sys.executable, '-c', child, sys.argv[1]])
"""


def test_stopping_a_sweep_waits_for_its_running_point(root):
    job = jobs.submit(
        root,
        "sweep",
        [],
        root / "sw",
        "testdev",
        log_name="sweep.log",
        argv=[sys.executable, "-c", SWEEP, str(root / "sw")],
    )
    sw = root / "sw"
    wait_for(lambda: state_of(root, job) == "running" and (sw / "child-started").exists(), what="the point started")
    sweep_pid = int((sw / "sweep.pid").read_text())
    jobs.stop(root, jobs.list_jobs(root)[0])
    wait_for(lambda: (sw / "child-stopping").exists(), what="the point checkpointing")
    wait_for(lambda: not _alive(sweep_pid), what="the sweep process gone")
    assert state_of(root, job) == "running"  # the sweep died, its point is still checkpointing
    (sw / "release").write_text("x")
    wait_for(lambda: state_of(root, job) == "exited", what="sweep exited")
    assert (sw / "child-done").exists()


def test_cancel_a_queued_job_before_it_starts(root):
    a = jobs.submit(root, "train", [], root / "a", "testdev", argv=fake(root / "a"))
    b = jobs.submit(root, "train", [], root / "b", "testdev", argv=fake(root / "b"))
    wait_for(lambda: state_of(root, a) == "running", what="a running")
    queued = next(j for j in jobs.list_jobs(root) if j.id == b.id)
    assert jobs.stop(root, queued) == "cancelled"
    wait_for(lambda: state_of(root, b) is None, what="b gone")
    assert not (root / "b").exists()


def test_a_failing_start_is_recorded_with_its_output(root):
    (root / "full").mkdir()
    (root / "full" / "x").write_text("someone else's file")
    job = jobs.submit(root, "train", [], root / "full", "testdev", argv=fake(root / "full"))
    wait_for(lambda: state_of(root, job) == "exited", what="exit")
    ended = jobs.job_for_run(root, root / "full", include_exited=True)
    assert ended.returncode == 2
    assert "run directory not empty" in ended.log_path().read_text()


def test_submit_refuses_a_second_live_job_for_the_same_run(root):
    jobs.submit(root, "train", [], root / "a", "testdev", argv=fake(root / "a"))
    with pytest.raises(RuntimeError, match="already has a running or queued job"):
        jobs.submit(root, "train", [], root / "a", "testdev", argv=fake(root / "a"))


def test_a_killed_launcher_frees_the_device(root):
    a = jobs.submit(root, "train", [], root / "a", "testdev", argv=fake(root / "a"))
    wait_for(lambda: state_of(root, a) == "running", what="a running")
    running = jobs.list_jobs(root)[0]
    jobs.stop(root, running, signal.SIGKILL)  # launcher and process die without cleanup
    wait_for(lambda: state_of(root, a) == "exited", what="a settled")
    b = jobs.submit(root, "train", [], root / "b", "testdev", argv=fake(root / "b", 0.1))
    wait_for(lambda: state_of(root, b) == "exited", what="b ran")


def test_damaged_job_file_is_ignored(root):
    (jobs.queue_dir(root) / "broken.json").write_text("{not json")
    assert jobs.list_jobs(root) == []


def test_detect_device_keys():
    assert jobs.detect_device("cpu") == "cpu"
    assert jobs.detect_device("cuda:0") == "cuda"
    assert jobs.detect_device("cuda:1") == "cuda:1"
    assert jobs.detect_device("auto") in ("cpu", "cuda", "mps")


# ---------------------------------------------------------------- the Train form


def demo_defaults() -> RunConfig:
    return RunConfig.from_dict(dict(PRESETS["demo"]))


def test_only_changed_fields_become_overrides():
    d = demo_defaults()
    values = {
        "divergence": d.divergence,
        "lr": float(d.lr),
        "max_steps": d.max_steps,
        "student_layers": "",
        "idts_c": 0.3,
        "max_train_examples": 0,
        "seed": 2.0,
    }
    assert overrides_from(values, d) == ["idts_c=0.3", "seed=2"]  # "" = None, the demo's own layers


def test_single_run_request_is_the_cli_command(tmp_path):
    d = demo_defaults()
    req = build_request(
        "single", "demo", {"idts": "inverse", "max_steps": 10}, "probe_interval=5\n# note\n", {}, "my-run", d, tmp_path
    )
    assert req.kind == "train"
    assert req.args == [
        "--preset",
        "demo",
        "--set",
        "idts=inverse",
        "max_steps=10",
        "probe_interval=5",
        "--run-dir",
        str(tmp_path / "my-run"),
    ]
    assert req.config.idts == "inverse" and req.config.probe_interval == 5
    assert req.display.startswith("python -m adakd train --preset demo")


@pytest.mark.parametrize(
    "extra, message",
    [
        ("lr=5", "lr = 5.0 is out of range"),
        ("learning_rate=0.1", "unknown config field"),
        ("probe_interval", "not of the form key=value"),
    ],
)
def test_invalid_settings_give_the_config_message(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        build_request("single", "demo", {}, extra, {}, "x", demo_defaults(), tmp_path)


def test_existing_name_and_bad_name_are_refused(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="already exists"):
        build_request("single", "demo", {}, "", {}, "taken", demo_defaults(), tmp_path)
    with pytest.raises(ValueError, match="path separator"):
        build_request("single", "demo", {}, "", {}, "a/b", demo_defaults(), tmp_path)


def test_c_sweep_and_ablation_requests(tmp_path):
    d = demo_defaults()
    req = build_request(
        "c-sweep", "demo", {"idts_c": 0.5, "max_steps": 10}, "", {"idts_c": "0.1, 0.9"}, "sw", d, tmp_path
    )
    assert req.kind == "sweep" and req.points == 2
    assert req.args == [
        "--preset",
        "demo",
        "--grid",
        "idts_c=0.1,0.9",
        "--set",
        "max_steps=10",
        "--root",
        str(tmp_path),
        "--name",
        "sw",
    ]
    req = build_request("ablation", "demo", {"latf": "fixed", "idts": "off"}, "", {"ablation": ""}, "ab", d, tmp_path)
    assert req.points == 4 and "--grid" in req.args and "ablation" in req.args
    assert not any(a.startswith(("latf=", "idts=")) for a in req.args)  # the grid sets them
    with pytest.raises(ValueError, match="idts_c"):
        build_request("c-sweep", "demo", {}, "", {"idts_c": "0.1,42"}, "bad", d, tmp_path)


def test_sweep_args_from_manifest_round_trip(tmp_path):
    manifest = {
        "preset": "demo",
        "grid": {"idts_c": ["0.1", "0.5"], "seed": ["0", "1"]},
        "base_overrides": {"max_steps": "10"},
    }
    assert sweep_args(manifest, tmp_path / "sw") == [
        "--preset",
        "demo",
        "--grid",
        "idts_c=0.1,0.5",
        "--grid",
        "seed=0,1",
        "--set",
        "max_steps=10",
        "--root",
        str(tmp_path),
        "--name",
        "sw",
    ]
    assert parse_extra("a=1\n\n b = 2 ") == ["a=1", "b=2"]
