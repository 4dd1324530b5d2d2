"""Fault tests of issue 17: one writer per run, damaged files kept aside, failures as one line.

Beside tests/test_faults.py (kill -9, full disks): here two processes write one run, files are
damaged between a kill and the resume, and leftovers of killed writers meet the next start.
Runs are real `smoke` runs (two tiny random Llamas) killed inside step 5 by test_faults' driver,
so the last checkpoint is step 3 and metrics.jsonl holds steps 1-4. Each test works on its own
copy of that killed run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adakd.cli import main
from adakd.runs.metric_gaps import run_step_problems
from adakd.runs.rundir import RunDir
from adakd.runs.runlock import LOCK_NAME
from analysis.runs import clear_cache, load_run, summary_row
from tests.integration.test_faults import ENV, PARALLEL_ENV, STEPS, built_victims

REPO = Path(__file__).resolve().parents[2]
BUSY = "is being written by another process"


@pytest.fixture(scope="session")
def killed(tmp_path_factory) -> Path:
    """A smoke run killed inside step 5 (checkpoint 3, metrics 1-4, probes at 0 and 3): the untouched
    copy test_faults' victims keep of their own "step:5" run. Tests copy it, never change it."""
    run_dir = built_victims(tmp_path_factory)["pristine"][0]
    assert [m["step"] for m in RunDir(run_dir).read_metrics()] == [1, 2, 3, 4]
    return run_dir


@pytest.fixture
def run_copy(killed, tmp_path) -> Path:
    target = tmp_path / "runs" / "victim"
    shutil.copytree(killed, target)
    return target


def steps_of(run_dir: Path) -> list[int]:
    return [m["step"] for m in RunDir(run_dir).read_metrics()]


def one_line(err: str) -> str:
    """The error line of a CLI run (log lines aside); asserts there is exactly one, no traceback."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def open_gate(gate: Path, procs: list[subprocess.Popen], lead: float = 0.3) -> None:
    """Start processes together: once every one has imported and touched its `ready-<pid>` file
    beside `gate`, write the start time (now + `lead`) into `gate` by rename, so none reads half of it."""
    deadline = time.time() + 180
    while len(list(gate.parent.glob("ready-*"))) < len(procs):
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "the processes never reached the starting gate"
        time.sleep(0.02)
    staged = gate.with_name(gate.name + ".tmp")
    staged.write_text(repr(time.time() + lead))
    staged.rename(gate)


# ---------------------------------------------------------------- one writer per run
HOLD = textwrap.dedent("""
    import sys, time
    from adakd.runs.runlock import run_lock
    with run_lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(60)
""")


@pytest.fixture
def holder(run_copy):
    """Another process holding the run's lock (as a training process would)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run_copy)], env=ENV, cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "argv", [["resume", "{run}"], ["eval", "{run}"], ["train", "--preset", "smoke", "--run-dir", "{run}"]]
)
def test_a_second_writer_exits_at_once_with_one_line(run_copy, holder, capsys, argv):
    before = sorted(p.name for p in run_copy.rglob("*"))
    started = time.monotonic()
    assert main([a.replace("{run}", str(run_copy)) for a in argv] + ["--quiet"]) == 2
    assert time.monotonic() - started < 30  # no waiting for the holder (nor for a model to load)
    line = one_line(capsys.readouterr().err)
    if argv[0] == "train":  # an existing run: refused as such, whoever holds it
        assert "already exists" in line
    else:
        assert f"{BUSY} (pid {holder.pid})" in line and str(run_copy) in line, line
    assert sorted(p.name for p in run_copy.rglob("*")) == before  # nothing touched


# The child's half of open_gate: say ready once imported, then wait for the start time.
GATE = textwrap.dedent("""
    import os, pathlib, time

    def start_time():
        gate = pathlib.Path(os.environ["START_GATE"])
        (gate.parent / f"ready-{os.getpid()}").touch()
        while not gate.exists():
            time.sleep(0.001)
        return float(gate.read_text())
""")

RESUMER = GATE + textwrap.dedent("""
    # `python -m adakd resume RUN` through the real CLI and its lock, 20 times in one process,
    # with the training replaced by a stand-in that continues metrics.jsonl by three steps (a
    # step every 20 ms) and only appends: if two ever wrote at once, the steps would repeat for
    # good. Each attempt i starts at the gate's time + i * GAP in both processes.
    import io, json, os, pathlib, sys, time, types
    from contextlib import redirect_stderr


    def check_resumable(path):
        return types.SimpleNamespace(max_steps=10 ** 6), None

    def resume(path, on_step=None):
        from adakd.runs.rundir import RunDir
        run = RunDir(path)
        last = max([m["step"] for m in run.read_metrics()], default=0)
        for step in range(last + 1, last + 4):
            run.append("metrics.jsonl", {"step": step, "loss": 1.0, "writer": os.getpid()})
            time.sleep(0.02)
        run.set_status("stopped", step=last + 3, total_steps=10 ** 6)
        return run.path

    sys.modules["adakd.training.trainer"] = types.SimpleNamespace(check_resumable=check_resumable, resume=resume)
    import adakd.cli
    adakd.cli._quiet_transformers = lambda: None
    start, gap = start_time(), float(os.environ["GAP"])
    for attempt in range(int(os.environ["ATTEMPTS"])):
        while time.time() < start + attempt * gap:  # both processes leave this loop together
            time.sleep(0.0005)
        err = io.StringIO()
        with redirect_stderr(err):
            code = adakd.cli.main(sys.argv[1:])
        print(json.dumps({"attempt": attempt, "code": code, "err": err.getvalue()}), flush=True)
""")


@pytest.mark.extended
def test_two_resumes_started_together_twenty_times_never_share_the_run(run_copy, tmp_path):
    """The lock path of `resume`, raced 20 times by two real processes: one writes, the other is
    refused at once (or, when it comes later, continues after the first): the steps stay unique
    and continuous every time."""
    script = tmp_path / "resumer.py"
    script.write_text(RESUMER)
    attempts, before = 20, steps_of(run_copy)
    (tmp_path / "gate").mkdir()
    env = dict(PARALLEL_ENV, START_GATE=str(tmp_path / "gate" / "start"), GAP="0.5", ATTEMPTS=str(attempts))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "resume", str(run_copy), "--quiet"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    open_gate(tmp_path / "gate" / "start", procs)
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-3000:] for _, err in outputs]
    results = [[json.loads(line) for line in out.splitlines() if line.startswith("{")] for out, _ in outputs]
    assert [len(r) for r in results] == [attempts, attempts]
    # Every attempt either wrote (0) or was refused at once because the other held the lock (2).
    # Attempts are not paired by index: on a loaded machine one attempt may outlast the GAP, and
    # then a process meets the other's *next* attempt; what must hold is one writer at a time.
    written = 0
    for result in (r for per_process in results for r in per_process):
        assert result["code"] in (0, 2), result
        if result["code"] == 2:
            assert BUSY in one_line(result["err"]), result
        written += result["code"] == 0
    assert written >= 1
    steps = steps_of(run_copy)
    assert steps == list(range(1, len(steps) + 1))  # unique and continuous after all 20 races
    assert len(steps) == len(before) + 3 * written
    assert written < 2 * attempts  # the races were real: started together, one met the other's lock


def test_real_resumes_started_together_end_with_unique_continuous_steps(killed, tmp_path):
    """Two real `python -m adakd resume` processes on one killed run (the 20 repetitions are the
    lock races above; one real pair is enough to show the whole resume path holds the lock)."""
    for attempt in range(1):
        run_dir = tmp_path / f"attempt-{attempt}"
        shutil.copytree(killed, run_dir)
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "adakd", "resume", str(run_dir), "--quiet"],
                env=PARALLEL_ENV,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = sorted((p.wait(timeout=300), p.communicate()[1]) for p in procs)
        assert [code for code, _ in results] == [0, 2], results
        line = one_line(results[1][1])
        assert BUSY in line or "already finished" in line, line
        assert steps_of(run_dir) == list(range(1, STEPS + 1))
        assert RunDir(run_dir).read_status()["state"] == "finished"
        assert run_step_problems(RunDir(run_dir)) == []
        resumes = [e for e in RunDir(run_dir).read_events() if e["kind"] == "resume"]
        assert len(resumes) == 1


STARTER = GATE + textwrap.dedent("""
    # `python -m adakd train --preset smoke` without --name, the clock frozen at one second and
    # training replaced by a stand-in that writes config.json and holds the folder for a moment.
    import os, pathlib, sys, time, types
    import adakd.training.runsetup

    adakd.training.runsetup.utc_now = lambda: "2026-01-02T03:04:05Z"

    def train(config, path, **kwargs):
        from adakd.runs.rundir import RunDir
        run = RunDir(path)
        run.create()
        run.write_json("config.json", {"format": 1, "name": run.path.name, "pid": os.getpid()})
        run.set_status("finished", step=0, total_steps=0)
        time.sleep(0.5)
        return run.path

    sys.modules["adakd.training.trainer"] = types.SimpleNamespace(train=train)
    import adakd.cli
    start = start_time()
    while time.time() < start:
        time.sleep(0.001)
    sys.exit(adakd.cli.main(sys.argv[1:]))
""")


@pytest.mark.extended
def test_three_default_names_in_the_same_second_are_unique(tmp_path):
    script = tmp_path / "starter.py"
    script.write_text(STARTER)
    root = tmp_path / "runs"
    (tmp_path / "gate").mkdir()
    env = dict(PARALLEL_ENV, START_GATE=str(tmp_path / "gate" / "start"))
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "train", "--preset", "smoke", "--root", str(root), "--quiet"],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    open_gate(tmp_path / "gate" / "start", procs)
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    names = sorted(p.name for p in root.iterdir())
    assert names == ["smoke-20260102-030405", "smoke-20260102-030405-2", "smoke-20260102-030405-3"]
    writers = {json.loads((root / n / "config.json").read_text())["pid"] for n in names}
    assert writers == {p.pid for p in procs}  # each process wrote its own folder


def test_refused_train_leaves_no_folder_and_a_failed_one_names_the_disk(tmp_path, monkeypatch, capsys):
    """A run folder that cannot be created is one line; torch's "enforce fail" when the disk
    fills during a checkpoint is reported as a full disk."""
    assert main(["train", "--preset", "smoke", "--run-dir", "/proc/1/newrun", "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "cannot create run folder /proc/1/newrun" in line and "FileNotFoundError" not in line

    import adakd.training.checkpoint as checkpoint

    def full(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
            "file data/0: file write failed"
        )

    monkeypatch.setattr(checkpoint.torch, "save", full)
    run_dir = tmp_path / "full"
    assert (
        main(
            [
                "train",
                "--preset",
                "smoke",
                "--set",
                "max_steps=3",
                "checkpoint_interval=2",
                "--run-dir",
                str(run_dir),
                "--quiet",
            ]
        )
        == 1
    )
    line = one_line(capsys.readouterr().err)
    assert line.startswith("error: run failed: disk full (No space left on device)") and "enforce" not in line
    status = RunDir(run_dir).read_status()
    assert status["state"] == "failed" and status["error"].startswith("disk full") and status["step"] == 2
    assert list((run_dir / "checkpoints").iterdir()) == []  # the half checkpoint gave its space back


# ---------------------------------------------------------------- damaged files kept aside
@pytest.mark.parametrize("name", ["tokens.parquet", "gradients.parquet"])
def test_resume_keeps_an_unreadable_probe_file_aside(run_copy, name):
    original = (run_copy / name).read_bytes()[:300]
    (run_copy / name).write_bytes(original)  # cut: unreadable
    assert main(["resume", str(run_copy), "--quiet"]) == 0
    kept = list(run_copy.glob(f"{name}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == original  # moved aside, byte for byte
    warnings = [e["message"] for e in RunDir(run_copy).read_events() if e["kind"] == "warning"]
    assert any(name in w and kept[0].name in w for w in warnings), warnings
    assert steps_of(run_copy) == list(range(1, STEPS + 1))
    import pandas as pd

    assert sorted(pd.read_parquet(run_copy / name)["step"].unique()) == [6, 9]  # only the new probes


def test_a_gap_in_metrics_is_reported_by_resume_list_and_the_runs_page(run_copy, capsys, caplog, monkeypatch):
    """metrics.jsonl loses step 2 in the middle (a garbled line): resume keeps the file as it was
    aside and reports the gap; the finished run is listed "with gaps", never plainly finished."""
    lines = (run_copy / "metrics.jsonl").read_text().splitlines(keepends=True)
    lines[1] = '{"step": 2, "loss": 1.0, garbled\n'
    (run_copy / "metrics.jsonl").write_text("".join(lines))
    assert main(["resume", str(run_copy), "--quiet"]) == 0
    kept = list(run_copy.glob("metrics.jsonl.damaged-*"))
    assert len(kept) == 1 and "garbled" in kept[0].read_text()
    warnings = [e["message"] for e in RunDir(run_copy).read_events() if e["kind"] == "warning"]
    assert "metrics.jsonl: step 2 missing" in warnings, warnings
    assert "step 2 missing" in caplog.text
    assert steps_of(run_copy) == [1, *range(3, STEPS + 1)]
    capsys.readouterr()

    assert main(["list", "--root", str(run_copy.parent)]) == 0
    out = capsys.readouterr().out
    assert "finished, with gaps" in out and "victim: metrics.jsonl: step 2 missing" in out, out
    assert main(["list", "--root", str(run_copy.parent), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["state"] == "finished, with gaps" and row["problems"] == ["metrics.jsonl: step 2 missing"]

    clear_cache()
    summary = summary_row(load_run(run_copy))
    assert summary["step_gaps"] == "metrics.jsonl: step 2 missing" and "step 2 missing" in summary["problems"]

    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs

    monkeypatch.setenv("ADAKD_RUNS", str(run_copy.parent))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", run_copy.parent / "no-samples")
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.dataframe[0].value["state"].tolist() == ["finished, with gaps"]  # the Runs page
    assert any("step 2 missing" in w.value for w in at.warning)


def test_duplicated_steps_are_never_plainly_finished(run_copy, capsys):
    """The damage two writers did before the lock: steps 3 and 4 logged twice."""
    assert main(["resume", str(run_copy), "--quiet"]) == 0
    text = (run_copy / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_copy / "metrics.jsonl").write_text("".join(text[:4] + text[2:]))
    capsys.readouterr()
    assert main(["list", "--root", str(run_copy.parent)]) == 0
    out = capsys.readouterr().out
    assert "finished, with gaps" in out and "steps 3-4 logged more than once" in out, out


@pytest.mark.parametrize(
    "damage, file",
    [
        ("state-not-json", "trainer_state.json"),
        ("rng-short", "trainer_state.json"),
        ("optimizer-pickle", "optimizer.pt"),
        ("weights-pickle", "model.safetensors"),
    ],
)
def test_a_failed_resume_keeps_the_run_as_it_was(run_copy, capsys, damage, file):
    """A damaged checkpoint: one line naming the file (never torch's advice to unpickle), and
    status.json still describes the run (its step, its checkpoint) plus the failure."""
    import torch

    ckpt = run_copy / "checkpoints" / "step-000003"
    before = RunDir(run_copy).read_status()
    metrics = (run_copy / "metrics.jsonl").read_text()
    if damage == "state-not-json":
        (ckpt / file).write_text('{"step": 3, "rng": ')
    elif damage == "rng-short":
        state = json.loads((ckpt / file).read_text())
        state["rng"]["python"] = state["rng"]["python"][:2]  # "not enough values to unpack"
        (ckpt / file).write_text(json.dumps(state))
    else:
        torch.save({"payload": Path("/etc/passwd")}, ckpt / file)  # a pickle of an arbitrary object

    assert main(["resume", str(run_copy), "--quiet"]) == 1
    line = one_line(capsys.readouterr().err)
    assert f"checkpoint {ckpt} is damaged ({file}:" in line and "move that folder aside" in line, line
    for banned in ("weights_only", "JSONDecodeError", "not enough values", "Traceback"):
        assert banned not in line
    status = RunDir(run_copy).read_status()
    assert status["state"] == "failed" and "is damaged" in status["error"]
    assert status["step"] == before["step"] and status["last_checkpoint"] == 3
    assert (run_copy / "metrics.jsonl").read_text() == metrics  # nothing truncated
    clear_cache()
    assert summary_row(load_run(run_copy))["steps"] == 4  # the run as it was (metrics 1-4), not step 0


def test_eval_on_a_checkpoint_replaced_by_a_pickle_is_one_line(run_copy):
    import torch

    torch.save({"payload": Path("/etc/passwd")}, run_copy / "checkpoints" / "step-000003" / "model.safetensors")
    done = subprocess.run(
        [sys.executable, "-m", "adakd", "eval", str(run_copy), "--examples", "1"],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    line = one_line(done.stderr)
    assert "step-000003 is damaged (model.safetensors:" in line and "weights_only" not in line


def test_debug_shows_the_traceback(run_copy):
    (run_copy / "checkpoints" / "step-000003" / "trainer_state.json").write_text("{")
    done = subprocess.run(
        [sys.executable, "-m", "adakd", "resume", str(run_copy), "--quiet", "--debug"],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and "CheckpointError" in done.stderr


# ---------------------------------------------------------------- leftovers
def test_leftovers_of_killed_writers_are_cleaned_on_the_next_start(run_copy):
    temp = run_copy / ".status.json.k3j9x_2a.tmp"
    temp.write_bytes(b"")  # a kill between mkstemp and the rename
    half = run_copy / "checkpoints" / "step-000001"  # a prune killed half-way: only one file left
    half.mkdir()
    (half / "optimizer.pt").write_bytes(b"x")
    assert main(["resume", str(run_copy), "--quiet"]) == 0
    assert not temp.exists() and not half.exists()
    names = sorted(p.name for p in (run_copy / "checkpoints").iterdir())
    assert names == ["step-000009", "step-000010"]  # keep_checkpoints = 2, nothing else
    assert [p.name for p in run_copy.iterdir() if p.name.startswith(".")] == [LOCK_NAME]


def test_list_reads_the_step_of_the_last_metrics_line(run_copy, capsys):
    status = json.loads((run_copy / "status.json").read_text())
    status["step"] = 1  # written every 2 s only: behind the metrics
    (run_copy / "status.json").write_text(json.dumps(status))
    assert main(["list", "--root", str(run_copy.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["step"] == 4


# ---------------------------------------------------------------- the dashboard's delete
def test_dashboard_delete_refuses_links_and_busy_runs(tmp_path, killed):
    from app.run_delete import delete_runs

    root, outside, samples = tmp_path / "runs", tmp_path / "elsewhere", tmp_path / "samples"
    for name in ("plain", "busy"):
        shutil.copytree(killed, root / name)
    shutil.copytree(killed, outside)
    (root / "link").symlink_to(outside, target_is_directory=True)
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root / "busy")], env=ENV, cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        deleted, refused = delete_runs([root / "plain", root / "link", root / "busy"], root, samples)
    finally:
        proc.kill()
        proc.wait()
    assert deleted == ["plain"] and not (root / "plain").exists()
    assert len(refused) == 2 and "link is a link" in refused[0] and f"{BUSY} (pid {proc.pid})" in refused[1]
    assert (outside / "config.json").exists() and (root / "busy" / "config.json").exists()


def test_runs_page_never_says_deleted_for_a_refused_link(tmp_path, monkeypatch, killed):
    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs

    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    root.mkdir()
    shutil.copytree(killed, outside)
    (root / "link").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    clear_cache()
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.session_state["selected_runs"] = [str(outside.resolve())]  # the runs list shows where a link leads
    at.run()
    [button] = [b for b in at.button if b.label.startswith("Delete")]
    button.click().run()
    [yes] = [b for b in at.button if b.label == "Yes, delete"]
    yes.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not [t for t in at.toast if "Deleted" in t.value]
    assert any("not deleted" in e.value for e in at.error), [e.value for e in at.error]
    assert (outside / "config.json").exists()
