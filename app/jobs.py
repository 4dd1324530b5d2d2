"""Launch, queue, stop and resume `python -m adakd` training processes (no Streamlit, no torch).

The dashboard starts exactly the CLI process a user would type by hand; this module only
spawns it, remembers it, and signals it. Everything is kept in files under the runs root so
that several browser sessions (and app restarts) see one consistent queue:

    RUNS/.queue/<job-id>.json   one job: kind, CLI argv, run dir, log file, device, state, pid
    RUNS/.queue/<job-id>.log    the job's output until its run directory exists
    RUNS/.queue/queue.lock      a filelock, held only while job files are read and rewritten

Life of a job:

1. `submit()` writes the job file (state "queued") and starts a *launcher* (app/launcher.py,
   `python -m app.launcher JOB_FILE`) in a new session, so it leads its own process group.
2. The launcher polls every `POLL_SECONDS`. Under the lock it claims the device when its job is
   the oldest queued job for that device and no job of the device is running (pid alive).
   It marks the job "running" and starts the CLI as its child, in the same process group,
   with stdout/stderr going to the job's log. A fresh run's directory must not exist before
   the trainer creates it (the trainer refuses a non-empty folder), so the output goes to
   `.queue/<job-id>.log` first and the launcher hard-links that file as `train.log` into the
   run directory as soon as the directory appears (same file: the CLI keeps appending).
   A resumed run appends to its existing `train.log`.
3. `stop()` sends SIGTERM to the process group: the trainer finishes its step, checkpoints and
   writes status "stopped"; the launcher ignores the signal and waits until no other process
   of its group is left (a sweep's current run outlives the sweep process). A queued job is
   cancelled instead (job file removed, launcher terminated).
4. When the CLI exits the launcher records state "exited" and the return code; exited jobs
   never block the device and are forgotten after `KEEP_EXITED_SECONDS`. The run's own
   status.json says how the run ended.

So the queue advances by itself, with or without an open browser: one small launcher process
waits per queued job, and nothing else is needed. `python -m app.jobs list RUNS` shows the jobs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from adakd.runs.atomic import write_text_atomic
from adakd.runs.rundir import pid_alive as process_alive
from adakd.runs.timestamps import parse_utc, utc_now

log = logging.getLogger(__name__)

QUEUE_DIR = ".queue"
POLL_SECONDS = 1.0
KEEP_EXITED_SECONDS = 24 * 3600
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Job:
    """One CLI process the dashboard launched or queued."""

    id: str
    kind: str  # "train" | "resume" | "sweep"
    argv: list[str]  # full command line of the CLI process
    run_dir: str  # run (or sweep) directory the process writes
    log: str  # final log file (train.log / sweep.log in run_dir)
    staging: str  # .queue/<id>.log: the output until the run directory exists
    device: str  # queue key: one running job per device
    created_at: str
    state: str = "queued"  # "queued" | "running" | "exited"
    pid: int | None = None  # the launcher's pid = the process group of the CLI
    pid_start: int | None = None  # process start tick, guards against pid reuse
    returncode: int | None = None  # CLI exit code once exited (None: launcher was killed)
    ended_at: str | None = None
    label: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    @property
    def live(self) -> bool:
        return self.state in ("queued", "running")

    def log_path(self) -> Path:
        """Where the output can be read now: the run's log once linked, else the staging file."""
        final = Path(self.log)
        return final if final.exists() else Path(self.staging)


# --------------------------------------------------------------------------- processes


def proc_start(pid: int) -> int | None:
    """Start time of a process in clock ticks (Linux /proc), None where unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    return int(stat[stat.rfind(")") + 2 :].split()[19])  # field 22 of the line: starttime


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    """True when `pid` is a live (non-zombie) process, and the same one when `start` is given."""
    if not pid or pid <= 0:
        return False
    try:  # reap our own exited child, or a finished launcher stays a zombie that looks alive
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
    if not process_alive(pid):
        return False
    return start is None or proc_start(pid) == start


def detect_device(requested: str) -> str:
    """The queue key of a run's device; "auto" becomes the accelerator the trainer would pick.

    Only a cheap presence check (no torch import): NVIDIA driver → "cuda", Apple silicon →
    "mps", else "cpu". "cuda:1" stays its own key, so two GPUs can each run a job.
    """
    requested = (requested or "auto").strip().lower()
    if requested != "auto":
        return "cuda" if requested == "cuda:0" else requested
    if Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi"):
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


# --------------------------------------------------------------------------- queue files


def queue_dir(root: str | os.PathLike) -> Path:
    path = Path(root) / QUEUE_DIR
    path.mkdir(parents=True, exist_ok=True)
    return path


def lock(root) -> FileLock:
    return FileLock(str(queue_dir(root) / "queue.lock"), timeout=30)


def write_job(path: Path, job: Job) -> None:
    write_text_atomic(path, json.dumps(asdict(job), indent=1))


def _read_jobs(root) -> list[tuple[Path, Job]]:
    jobs = []
    for path in queue_dir(root).glob("*.json"):
        try:
            jobs.append((path, Job(**json.loads(path.read_text()))))
        except (OSError, ValueError, TypeError) as exc:  # a damaged job file must not block the queue
            log.warning("ignoring damaged job file %s: %s", path, exc)
            path.unlink(missing_ok=True)
    jobs.sort(key=lambda pj: (pj[1].created_at, pj[1].id))
    return jobs


def _age(stamp: str | None) -> float:
    return time.time() - parse_utc(stamp).timestamp() if stamp else 0.0


def prune_jobs(root) -> list[tuple[Path, Job]]:
    """Settle jobs whose launcher is gone and forget old ones (caller holds the lock)."""
    kept = []
    for path, job in _read_jobs(root):
        if job.live and job.pid is None and _age(job.created_at) > 60:
            job.pid = -1  # its launcher never reported in
        if job.live and job.pid is not None and not pid_alive(job.pid, job.pid_start):
            if job.state == "queued":  # cancelled or killed before it started
                path.unlink(missing_ok=True)
                continue
            job.state, job.ended_at = "exited", utc_now()  # launcher killed: return code unknown
            write_job(path, job)
        if job.state == "exited" and _age(job.ended_at) > KEEP_EXITED_SECONDS:
            path.unlink(missing_ok=True)
            Path(job.staging).unlink(missing_ok=True)
            continue
        kept.append((path, job))
    return kept


def list_jobs(root, *, include_exited: bool = False) -> list[Job]:
    """Jobs in queue order (oldest first); exited ones only when asked."""
    with lock(root):
        jobs = [job for _, job in prune_jobs(root)]
    return [j for j in jobs if include_exited or j.live]


def job_for_run(root, run_dir, *, include_exited: bool = False) -> Job | None:
    """The newest job writing `run_dir` (live only, unless include_exited)."""
    target = Path(run_dir).resolve()
    found = [j for j in list_jobs(root, include_exited=include_exited) if Path(j.run_dir).resolve() == target]
    return found[-1] if found else None


def queue_position(job: Job, jobs: list[Job]) -> tuple[int, Job | None]:
    """(1-based position among queued jobs of the same device, the running job blocking it)."""
    same = [j for j in jobs if j.device == job.device]
    running = next((j for j in same if j.state == "running"), None)
    queued = [j for j in same if j.state == "queued"]
    pos = next((i + 1 for i, j in enumerate(queued) if j.id == job.id), 0)
    return pos, running


def queue_message(job: Job, jobs: list[Job]) -> str:
    """Human text for a queued job, e.g. "`demo-2` is queued for cpu (position 1) — waiting …"."""
    pos, running = queue_position(job, jobs)
    behind = f" — waiting for `{running.name}` to finish" if running else " — starting"
    return f"`{job.name}` is queued for {job.device} (position {pos}){behind}. One training job runs per device."


# --------------------------------------------------------------------------- submit / stop


def cli_command(kind: str, args: list[str]) -> list[str]:
    """The CLI command line a user would type: `python -m adakd <kind> <args>`."""
    return [sys.executable, "-m", "adakd", kind, *args]


def submit(
    root,
    kind: str,
    args: list[str],
    run_dir,
    device: str = "auto",
    *,
    log_name: str = "train.log",
    label: str = "",
    argv: list[str] | None = None,
) -> Job:
    """Queue one CLI process writing `run_dir`; it starts as soon as its device is free.

    `argv` replaces the adakd CLI command (tests use it to queue plain processes).
    Raises RuntimeError when a live job already writes `run_dir`.
    """
    root = Path(root).resolve()
    run_dir = Path(run_dir).resolve()
    job_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + "-" + uuid.uuid4().hex[:6]
    path = queue_dir(root) / f"{job_id}.json"
    job = Job(
        id=job_id,
        kind=kind,
        argv=argv or cli_command(kind, args),
        run_dir=str(run_dir),
        log=str(run_dir / log_name),
        staging=str(path.with_suffix(".log")),
        device=detect_device(device),
        created_at=utc_now(),
        label=label or kind,
    )
    with lock(root):  # check and write under one lock: two sessions cannot both queue a run
        if any(j.live and Path(j.run_dir).resolve() == run_dir for _, j in prune_jobs(root)):
            raise RuntimeError(f"{run_dir.name} already has a running or queued job")
        write_job(path, job)
    with open(job.staging, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.launcher", str(path)],
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop() signals launcher + CLI
            env=child_env(),
        )
    with lock(root):
        if path.exists():
            job = Job(**json.loads(path.read_text()))
            if job.pid is None:  # the launcher may already have claimed the device
                job.pid, job.pid_start = proc.pid, proc_start(proc.pid)
                write_job(path, job)
    return job


def stop(root, job: Job, sig: int = signal.SIGTERM) -> str:
    """Stop a job: SIGTERM to a running CLI's process group; cancel a queued one.

    Returns "stopping" (the trainer checkpoints and writes status "stopped" itself),
    "cancelled", or "gone" when the job had already ended.
    """
    with lock(root):
        current = {j.id: (p, j) for p, j in prune_jobs(root)}
        if job.id not in current or not current[job.id][1].live:
            return "gone"
        path, job = current[job.id]
        if job.state == "queued":
            path.unlink(missing_ok=True)
    if job.pid is None or job.pid <= 0:
        return "cancelled"
    try:
        os.killpg(job.pid, sig)
    except ProcessLookupError:
        return "gone"
    except PermissionError:
        os.kill(job.pid, sig)
    return "cancelled" if job.state == "queued" else "stopping"


def stop_pid(pid: int, sig: int = signal.SIGTERM) -> bool:
    """Signal a run the dashboard did not launch (status.json pid), e.g. one started by hand."""
    if not pid_alive(pid):
        return False
    os.kill(pid, sig)
    return True


def child_env() -> dict:
    """The environment of a launched process: ours, with unbuffered output so its log shows every line at once."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def main(argv: list[str] | None = None) -> int:
    """`python -m app.jobs list RUNS`: the jobs under a runs root, for a terminal."""
    parser = argparse.ArgumentParser(prog="python -m app.jobs", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["list"])
    parser.add_argument("root")
    args = parser.parse_args(argv)
    for job in list_jobs(args.root, include_exited=True):
        print(f"{job.state:8s} {job.device:6s} pid={job.pid} rc={job.returncode} {job.name}  {' '.join(job.argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
