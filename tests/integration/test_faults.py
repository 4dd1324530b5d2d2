"""Fault tests: kill -9 at chosen and random points, a full or read-only disk, damaged runs in the
dashboard, two dashboard sessions starting training at once (and two submits racing for one run
name), a runs folder without hard links, and a killed teacher conversion (marked slow).

Training runs are real `python -m adakd train --preset smoke` processes (two tiny random Llamas).
Faults are injected from outside the library: a small driver (DRIVER below) wraps three library
functions and SIGKILLs its own process at the chosen moment:

    FAULT=step:N        inside optimiser step N (when its loss is computed)
    FAULT=metrics:N     after half of step N's metrics line reached the disk
    FAULT=checkpoint:N  after half of checkpoint N's model.safetensors was written
    FAULT=none:0        no injected fault (the test kills the process after a seeded random delay)

The driver also appends each metrics step to FAULT_LOG once the library's append (write + flush
+ fsync) has returned, so a test can check that no flushed line was lost.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from safetensors import safe_open

from adakd.cli import main
from adakd.runs.rundir import RunDir
from adakd.training.checkpoint import list_checkpoints
from analysis.runs import clear_cache, load_run
from tests.build_once import build_once

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
# the kill tests run five training processes side by side: one thread each, no oversubscription
PARALLEL_ENV = dict(ENV, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
STEPS = 10
OVERRIDES = [f"max_steps={STEPS}", "checkpoint_interval=3", "probe_interval=3", "keep_checkpoints=2", "log_interval=1"]

DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path

    fault, at = os.environ.get("FAULT", "none:0").split(":")
    at = int(at)
    flushed_log = os.environ["FAULT_LOG"]

    import adakd.training.checkpoint as checkpoint
    import adakd.runs.rundir as rundir
    import adakd.training.trainer as trainer

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    real_append = rundir.append_jsonl
    def append(path, record):
        metrics = Path(path).name == "metrics.jsonl"
        if fault == "metrics" and metrics and record.get("step") == at:
            line = json.dumps(record)
            with open(path, "a") as f:  # half the line reaches the disk, then the process dies
                f.write(line[: len(line) // 2]); f.flush(); os.fsync(f.fileno())
            die()
        real_append(path, record)
        if metrics:
            with open(flushed_log, "a") as f:
                f.write(f"{record['step']}\\n")
    rundir.append_jsonl = append

    real_save_model = checkpoint.save_model
    def save_model(model, filename, *args, **kwargs):
        real_save_model(model, filename, *args, **kwargs)
        if fault == "checkpoint" and Path(filename).parent.name == f"step-{at:06d}.tmp":
            os.truncate(filename, os.path.getsize(filename) // 2)  # killed half-way through the weights
            die()
    checkpoint.save_model = save_model

    calls = 0
    real_loss = trainer.adakd_loss_from_hidden  # the default loss_input = hidden
    def loss(*args, **kwargs):
        global calls
        calls += 1
        if fault == "step" and calls == at:  # one loss per step (grad_accum = 1)
            die()
        return real_loss(*args, **kwargs)
    trainer.adakd_loss_from_hidden = loss

    from adakd.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def _probe_steps(steps: int = STEPS, every: int = 3) -> list[int]:
    return sorted({0, *range(every, steps + 1, every)})


def start_driver(folder: Path, fault: str, run_dir: Path) -> tuple[subprocess.Popen, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    script, flushed = folder / "driver.py", folder / "flushed.txt"
    script.write_text(DRIVER)
    env = dict(PARALLEL_ENV, FAULT=fault, FAULT_LOG=str(flushed))
    argv = [
        sys.executable,
        str(script),
        "train",
        "--preset",
        "smoke",
        "--set",
        *OVERRIDES,
        "--run-dir",
        str(run_dir),
        "--quiet",
    ]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, flushed


def flushed_steps(flushed: Path) -> list[int]:
    return [int(s) for s in flushed.read_text().split()] if flushed.exists() else []


INJECTED = {"step:5": 3, "metrics:8": 6, "checkpoint:9": 6}  # fault -> the checkpoint a resume starts from


@pytest.fixture(scope="session")
def victims(tmp_path_factory):
    """Every training process of the kill tests, run side by side to save time: the reference
    run without a fault ("straight"), the three injected faults, and one run killed from outside
    after a seeded random delay ("random"). Built once per session, whichever xdist worker asks
    first (each test resumes only its own victim in place). Returns {name: (run_dir, flushed
    steps, pid)}, plus "pristine": an untouched copy of the "step:5" run (test_faults_writers)."""
    return built_victims(tmp_path_factory)


def built_victims(tmp_path_factory) -> dict[str, tuple[Path, list[int], int]]:
    """The victims fixture's value, for other modules (built at most once per session)."""
    built = build_once(tmp_path_factory, "fault-victims", _run_victims)
    assert isinstance(built, dict)
    return {name: (Path(d), flushed, pid) for name, (d, flushed, pid) in built.items()}


def _run_victims(base: Path) -> dict:
    procs = {}
    for name in ("straight", *INJECTED, "random"):
        folder = base / name.replace(":", "-")
        fault = name if name in INJECTED else "none:0"
        procs[name] = (folder / "run", *start_driver(folder, fault, folder / "run"))
    rng = random.Random(9)
    wait_for_step = rng.randint(1, 6)
    run_dir, proc, _ = procs["random"]
    try:
        deadline = time.time() + 300
        while len(RunDir(run_dir).read_metrics()) < wait_for_step:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.time() < deadline, "the run did not reach its first steps"
            time.sleep(0.05)
        seconds = [m["step_seconds"] for m in RunDir(run_dir).read_metrics()]
        time.sleep(rng.uniform(0, 1.5) * sum(seconds) / len(seconds))  # anywhere in the next step(s)
        assert proc.poll() is None, "the run finished before the kill: make it longer"
        proc.kill()
        errors = {name: p.communicate(timeout=300)[1] for name, (_, p, _) in procs.items()}
    finally:
        for _, p, _ in procs.values():
            p.kill()
            p.wait()
    assert procs["straight"][1].returncode == 0, errors["straight"][-3000:]
    for name, (_, p, _) in procs.items():
        if name != "straight":
            assert p.returncode == -signal.SIGKILL, (name, errors[name][-3000:])
    built = {name: (str(d), flushed_steps(f), p.pid) for name, (d, p, f) in procs.items()}
    pristine = base / "pristine" / "run"
    shutil.copytree(procs["step:5"][0], pristine, symlinks=True)
    built["pristine"] = (str(pristine), built["step:5"][1], built["step:5"][2])
    return built


@pytest.fixture(scope="session")
def straight(victims):
    """The finished reference run (no fault)."""
    return victims["straight"][0]


def check_crashed_run(run_dir: Path, flushed: list[int], pid: int) -> int:
    """What a reader finds after kill -9; returns the step the resume must start from."""
    run = RunDir(run_dir)
    status = run.read_status()
    assert status is not None, "status.json must always parse (written by rename)"
    assert status["state"] == "running" and status["pid"] == pid
    assert run.effective_state() == "crashed"
    clear_cache()
    loaded = load_run(run_dir)
    assert loaded.state == "crashed"
    assert loaded.problems == [], loaded.problems  # a cut last line is expected, not a problem
    steps = [m["step"] for m in run.read_metrics()]
    assert steps == list(range(1, len(steps) + 1)), steps  # whole lines only, in order
    assert set(flushed) <= set(steps), (flushed, steps)  # nothing that was flushed is lost
    assert status["step"] <= len(steps)  # status never claims more than was done
    complete = [s for s, _ in list_checkpoints(run.checkpoints)]
    assert status["last_checkpoint"] in [None, *complete]
    for _, path in list_checkpoints(run.checkpoints):  # every complete checkpoint is whole
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            assert list(f.keys())
        assert json.loads((path / "trainer_state.json").read_text())["step"] == int(path.name[5:])
    probed = sorted(loaded.tokens["step"].unique())
    assert set(probed) <= {s for s in _probe_steps() if s <= len(steps)}, probed
    return complete[-1] if complete else 0


def check_resumed(run_dir: Path, resumed_from: int, straight: Path) -> None:
    run = RunDir(run_dir)
    assert run.read_status()["state"] == "finished"
    metrics = run.read_metrics()
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # each step exactly once
    reference = RunDir(straight).read_metrics()
    # resumed from the last complete checkpoint: the same trajectory as without the fault
    assert [m["loss"] for m in metrics] == pytest.approx([m["loss"] for m in reference], rel=1e-5, abs=1e-8)
    resumes = [e for e in run.read_events() if e["kind"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == resumed_from
    assert not [p for p in run.checkpoints.iterdir() if p.name.endswith(".tmp")]
    tokens = pd.read_parquet(run_dir / "tokens.parquet")
    assert sorted(tokens["step"].unique()) == _probe_steps()
    assert tokens.groupby("step").size().nunique() == 1  # no probe step written twice
    clear_cache()
    assert load_run(run_dir).problems == []


@pytest.mark.parametrize("fault", list(INJECTED))
def test_kill_9_at_an_injected_point_then_resume(victims, fault):
    run_dir, flushed, pid = victims[fault]
    assert check_crashed_run(run_dir, flushed, pid) == INJECTED[fault]
    kind, at = fault.split(":")
    steps = [m["step"] for m in RunDir(run_dir).read_metrics()]
    assert steps[-1] == (int(at) - 1 if kind in ("step", "metrics") else int(at))
    if kind == "metrics":  # half of step 8's line is on disk: skipped, not reported
        assert not (run_dir / "metrics.jsonl").read_text().endswith("\n")
    if kind == "checkpoint":  # the half-written checkpoint stays a .tmp folder, never step-000009
        assert (run_dir / "checkpoints" / "step-000009.tmp").is_dir()
        assert not (run_dir / "checkpoints" / "step-000009").exists()
    assert main(["resume", str(run_dir), "--quiet"]) == 0
    check_resumed(run_dir, INJECTED[fault], victims["straight"][0])


@pytest.mark.extended
def test_kill_9_at_a_random_moment_then_resume_with_the_cli(victims):
    run_dir, flushed, pid = victims["random"]
    resume_from = check_crashed_run(run_dir, flushed, pid)
    done = subprocess.run(
        [sys.executable, "-m", "adakd", "resume", str(run_dir), "--quiet"],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    check_resumed(run_dir, resume_from, victims["straight"][0])


# ---------------------------------------------------------------- a full or read-only disk
def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _no_corrupt_files(run_dir: Path) -> None:
    """Every file a reader looks at parses; no temp file is left behind."""
    leftovers = [p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert not leftovers, leftovers
    for name in ("config.json", "status.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    clear_cache()
    assert load_run(run_dir).problems == []


def test_full_and_read_only_disks_give_a_clear_error_and_no_corrupt_files(tmp_path):
    """Two real training processes side by side, each writing its run folder on its own 4 MB tmpfs:
    one fills the disk at its first checkpoint (~38 MB with the optimiser), the other's disk is
    remounted read-only after two steps."""
    disks = {fault: tmp_path / fault for fault in ("full", "read-only")}
    mounted = []
    try:
        for disk in disks.values():
            if not _mount_tmpfs(disk, "4m"):
                pytest.skip("cannot mount a tmpfs here (needs root): see the in-process ENOSPC test below")
            mounted.append(disk)
        procs = {}
        for fault, disk in disks.items():
            overrides = [o for o in OVERRIDES if not o.startswith("checkpoint_interval")]
            overrides.append("checkpoint_interval=3" if fault == "full" else "checkpoint_interval=0")
            procs[fault] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "adakd",
                    "train",
                    "--preset",
                    "smoke",
                    "--set",
                    *overrides,
                    "--run-dir",
                    str(disk / "victim"),
                    "--quiet",
                ],
                env=PARALLEL_ENV,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
        deadline = time.time() + 240
        while len(RunDir(disks["read-only"] / "victim").read_metrics()) < 2:
            assert procs["read-only"].poll() is None and time.time() < deadline, procs["read-only"].communicate()
            time.sleep(0.05)
        subprocess.run(["mount", "-o", "remount,ro", str(disks["read-only"])], check=True, timeout=10)
        errors = {fault: proc.communicate(timeout=240)[1] for fault, proc in procs.items()}
        for fault, reason in (("full", "No space left on device"), ("read-only", "Read-only file system")):
            err, run_dir = errors[fault], disks[fault] / "victim"
            assert procs[fault].returncode == 1, err[-3000:]
            # one line that says what happened (the CLI's), and no traceback on the terminal
            assert any(line.startswith("error: run failed:") and reason in line for line in err.splitlines()), err[
                -3000:
            ]
            assert "Traceback" not in err, err[-3000:]
            status = RunDir(run_dir).read_status()
            if fault == "full":  # space is given back by removing the half checkpoint: the failure is recorded
                assert status["state"] == "failed" and reason in status["error"] and status["step"] == 3
                assert list((run_dir / "checkpoints").iterdir()) == []
            else:  # nothing can be written any more: the stale "running" with a dead pid reads as crashed
                assert status["state"] == "running" and RunDir(run_dir).effective_state() == "crashed"
            _no_corrupt_files(run_dir)
    finally:
        for disk in mounted:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=10)


def test_enospc_while_writing_metrics_is_recorded_and_nothing_is_corrupt(tmp_path, monkeypatch, capsys):
    """The same fault in-process (works without root): the disk fills up at step 4's metrics line."""
    import errno

    import adakd.runs.rundir as rundir

    real = rundir.append_jsonl

    def append(path, record):
        if Path(path).name == "metrics.jsonl" and record.get("step") == 4:
            with open(path, "a") as f:  # a partial write, then the OS refuses the rest
                f.write(json.dumps(record)[:20])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, record)

    monkeypatch.setattr(rundir, "append_jsonl", append)
    run_dir = tmp_path / "victim"
    code = main(["train", "--preset", "smoke", "--set", *OVERRIDES, "--run-dir", str(run_dir), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert any(
        line.startswith("error: run failed:") and "No space left on device" in line for line in err.splitlines()
    ), err[-3000:]
    assert "Traceback" not in err
    status = RunDir(run_dir).read_status()
    assert status["state"] == "failed" and "No space left on device" in status["error"] and status["step"] == 4
    assert [m["step"] for m in RunDir(run_dir).read_metrics()] == [1, 2, 3]
    _no_corrupt_files(run_dir)


# ---------------------------------------------------------------- the dashboard
def test_dashboard_with_damaged_runs_next_to_a_good_one(tmp_path, monkeypatch, straight):
    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs

    root = tmp_path / "runs"
    good = root / "good"
    shutil.copytree(straight, good)
    damage = {
        "cut-parquet": lambda p: (p / "tokens.parquet").write_bytes((p / "tokens.parquet").read_bytes()[:300]),
        "garbage-line": lambda p: (p / "metrics.jsonl").write_text(
            (p / "metrics.jsonl").read_text().replace("\n", "\n{this is not json\n", 1)
        ),
        "no-config": lambda p: (p / "config.json").unlink(),
    }
    for name, harm in damage.items():
        shutil.copytree(straight, root / name)
        meta = json.loads((root / name / "config.json").read_text())
        meta["name"] = name
        (root / name / "config.json").write_text(json.dumps(meta))
        harm(root / name)
    meta = json.loads((good / "config.json").read_text())
    meta["name"] = "good"
    (good / "config.json").write_text(json.dumps(meta))
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    clear_cache()

    main_py = str(REPO / "app" / "main.py")
    at = AppTest.from_file(main_py, default_timeout=60)
    at.session_state["selected_runs"] = [str(good)]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert set(at.dataframe[0].value["name"]) == {"good", "cut-parquet", "garbage-line", "no-config"}
    warnings = " ".join(w.value for w in at.warning)
    assert "tokens.parquet: unreadable" in warnings
    assert "metrics.jsonl line 2: not valid JSON" in warnings
    assert "config.json missing" in warnings
    assert at.subheader[0].value == "good"
    assert not [w for w in at.warning if w.value.startswith("**good**")]

    for name in ("good", *damage):  # every page of one run, on each run
        for page in ("views/dynamics.py", "views/gradients.py"):
            at = AppTest.from_file(main_py, default_timeout=60)
            at.session_state["selected_runs"] = [str(root / name)]
            at.run()
            at.switch_page(page).run()
            assert not at.exception, (name, page, [e.value for e in at.exception])
            problems = [w.value for w in at.warning if "read with problems" in w.value]
            assert bool(problems) == (name != "good"), (name, page, problems)
            if name in ("good", "garbage-line", "no-config") and page == "views/dynamics.py":
                assert at.get("plotly_chart"), (name, page)  # what could be read is still shown


def test_two_sessions_start_training_at_once(tmp_path, monkeypatch):
    """Two browser sessions press Start: one run trains, the other waits in the queue; a second
    start under a name already taken is refused; the two runs never overlap or share files."""
    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs
    from app import jobs

    root = tmp_path / "runs"
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    main_py = str(REPO / "app" / "main.py")

    def session(name: str) -> AppTest:
        at = AppTest.from_file(main_py, default_timeout=60)
        at.run()
        at.switch_page("views/train.py").run()
        at.selectbox(key="train-preset").set_value("smoke").run()
        at.text_input(key="train-name-single-smoke").input(name).run()
        at.text_area(key="train-smoke-extra").input("max_steps=3\nprobe_interval=0\neval_examples=0").run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        return at

    try:
        first, second = session("first"), session("first")
        first.button(key="train-launch").click().run()
        # The launcher starts the first job asynchronously: wait until it owns the device, so
        # the second session meets a running job (not one still waiting for its launcher).
        deadline = time.time() + 60
        while {j.name: j.state for j in jobs.list_jobs(root)}.get("first") != "running":
            assert time.time() < deadline, jobs.list_jobs(root)
            time.sleep(0.2)
        second.button(key="train-launch").click().run()  # the same name, a moment later
        refused = " ".join(e.value for e in second.error)
        assert "first" in refused and (
            "already has a running or queued job" in refused or "already exists" in refused
        ), refused
        second.text_input(key="train-name-single-smoke").input("second").run()
        second.button(key="train-launch").click().run()
        at_submit = {j.name: j.state for j in jobs.list_jobs(root)}
        assert not second.exception and not second.error, [e.value for e in second.error]
        assert at_submit == {"first": "running", "second": "queued"}, at_submit
        assert any("`second` is queued for cpu (position 1)" in i.value for i in second.info)

        deadline = time.time() + 240
        while jobs.list_jobs(root):
            states = [j.state for j in jobs.list_jobs(root)]
            assert states.count("running") <= 1, states  # one job per device, all along
            assert time.time() < deadline, states
            time.sleep(0.2)
        ended = {j.name: j for j in jobs.list_jobs(root, include_exited=True)}
        assert {n: j.returncode for n, j in ended.items()} == {"first": 0, "second": 0}
    finally:
        for job in jobs.list_jobs(root):
            jobs.stop(root, job, signal.SIGKILL)
    for name in ("first", "second"):
        run = RunDir(root / name)
        assert run.read_status()["state"] == "finished" and [m["step"] for m in run.read_metrics()] == [1, 2, 3]
        log = (root / name / "train.log").read_text()
        assert f"--run-dir {root / name}" in log and str(root / ("second" if name == "first" else "first")) not in log
    # the second started only after the first had finished
    assert RunDir(root / "first").read_status()["updated_at"] <= RunDir(root / "second").read_config()["started_at"]


def test_concurrent_submits_of_one_run_name_accept_exactly_one(tmp_path, monkeypatch):
    """Two sessions submit the same run at the same moment, one slowed down between its check and
    its write (a loaded machine): exactly one job is queued, the other gets a clear refusal."""
    import threading

    from app import jobs

    real_now = jobs.utc_now

    def slow_now():
        time.sleep(0.3)
        return real_now()

    monkeypatch.setattr(jobs, "utc_now", slow_now)
    stand_in = [sys.executable, "-c", "import time; time.sleep(30)"]
    barrier, results = threading.Barrier(2), []

    def submit():
        barrier.wait()
        try:
            results.append(jobs.submit(tmp_path, "train", [], tmp_path / "same", "cpu", argv=stand_in))
        except RuntimeError as err:
            results.append(err)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        accepted = [r for r in results if isinstance(r, jobs.Job)]
        refused = [str(r) for r in results if isinstance(r, RuntimeError)]
        assert len(accepted) == 1 and len(refused) == 1, results
        assert "already has a running or queued job" in refused[0]
        assert len(jobs.list_jobs(tmp_path)) == 1
    finally:
        monkeypatch.setattr(jobs, "utc_now", real_now)
        for job in jobs.list_jobs(tmp_path):
            jobs.stop(tmp_path, job, signal.SIGKILL)


def test_runs_folder_without_hard_links_still_gets_the_whole_log(tmp_path, monkeypatch):
    """The launcher hard-links its staging log into the new run folder; where that fails (the run
    folder on another file system, or one without hard links) the run's train.log must still end
    up with the whole output, including what the trainer printed after the run folder appeared."""
    import errno

    from app import jobs, launcher

    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))

    monkeypatch.setattr(launcher.os, "link", no_links)
    monkeypatch.setattr(launcher, "_group_members", lambda pgid: [])  # in-process: no process group of its own
    run_dir = tmp_path / "run"
    script = (
        "import pathlib, sys, time; d = pathlib.Path(sys.argv[1]); print('before the folder', flush=True); "
        "d.mkdir(); (d / 'config.json').write_text('{}'); time.sleep(1.2); print('after the folder', flush=True)"
    )
    path = jobs.queue_dir(tmp_path) / "job-1.json"
    job = jobs.Job(
        id="job-1",
        kind="train",
        argv=[sys.executable, "-c", script, str(run_dir)],
        run_dir=str(run_dir),
        log=str(run_dir / "train.log"),
        staging=str(path.with_suffix(".log")),
        device="cpu",
        created_at=jobs.utc_now(),
    )
    jobs.write_job(path, job)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert launcher.wait_and_run(str(path)) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    log = (run_dir / "train.log").read_text()
    assert "before the folder" in log and "after the folder" in log and "exited with code 0" in log, log
    assert not Path(job.staging).exists()
    assert json.loads(path.read_text())["returncode"] == 0


# ---------------------------------------------------------------- the teacher conversion
@pytest.mark.slow
@pytest.mark.extended
def test_killed_teacher_conversion_never_leaves_a_half_written_cache(tmp_path, teacher_dir):
    """kill -9 the real GGUF conversion into an empty ADAKD_CACHE, then convert again."""
    from adakd.models.assets import MANIFEST

    cache = tmp_path / "cache"
    env = dict(ENV, ADAKD_CACHE=str(cache))
    target = cache / teacher_dir.name
    proc = subprocess.Popen(
        [sys.executable, "-m", "adakd.models.assets"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not list(cache.glob(f"{target.name}.tmp-*")):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        time.sleep(random.Random(3).uniform(0.5, 4.0))  # somewhere in reading the GGUF
        assert proc.poll() is None, "the conversion finished before the kill"
    finally:
        proc.kill()
        proc.communicate()
    assert not target.exists()  # nothing that looks like a converted folder
    assert not list(cache.glob(f"*/{MANIFEST}"))

    done = subprocess.run(
        [sys.executable, "-m", "adakd.models.assets"], env=env, cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str(target)
    assert "interrupted conversion" in done.stderr  # the leftover was noticed and removed
    assert sorted(p.name for p in cache.iterdir()) == [target.name, f"{target.name}.lock"]
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["source"]["sha256_verified"] is True
    # the same bytes as the suite's own converted teacher (the conversion is deterministic)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert (target / name).read_bytes() == (teacher_dir / name).read_bytes(), name
