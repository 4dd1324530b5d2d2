"""The launcher of one dashboard job: `python -m app.launcher JOB_FILE` (started by app.jobs.submit).

It waits for its turn on the device, runs the CLI as its child in its own process group,
links the output into the run directory once that exists, waits for the whole group (a
sweep's running point outlives a killed sweep process), and records how the job ended.
See app/jobs.py for the queue as a whole.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from app.jobs import POLL_SECONDS, REPO_ROOT, Job, child_env, lock, proc_start, prune_jobs, utc_now, write_job


def _claim(root: Path, path: Path) -> Job | None | bool:
    """Under the lock: mark our job running if it is first in line; False when it was removed."""
    with lock(root):
        live = [(p, j) for p, j in prune_jobs(root) if j.live]
        mine = next((j for p, j in live if p == path), None)
        if mine is None:
            return False
        same = [j for _, j in live if j.device == mine.device]
        if any(j.state == "running" for j in same):
            return None
        if next(j for j in same if j.state == "queued").id != mine.id:
            return None
        mine.state, mine.pid, mine.pid_start = "running", os.getpid(), proc_start(os.getpid())
        write_job(path, mine)
        return mine


def _link_log(staging: Path, final: Path) -> bool:
    """Make the staging log appear as the run's log once the run directory exists."""
    if not (final.parent / "config.json").exists() and not (final.parent / "sweep.json").exists():
        return False
    try:
        os.link(staging, final)
    except FileExistsError:
        return True
    except OSError:  # another file system, or none with hard links: a copy now, refreshed at the end
        shutil.copyfile(staging, final)
    return True


def _group_members(pgid: int) -> list[int]:
    """Other live processes of process group `pgid` (Linux /proc; [] elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text()
        except OSError:
            continue
        after = fields[fields.rfind(")") + 2 :].split()
        pid = int(stat.parent.name)
        if int(after[2]) == pgid and pid != os.getpid() and after[0] not in ("Z", "X"):
            members.append(pid)
    return members


def _finish(root: Path, path: Path, returncode: int | None) -> None:
    with lock(root):
        if path.exists():
            job = Job(**json.loads(path.read_text()))
            job.state, job.returncode, job.ended_at = "exited", returncode, utc_now()
            write_job(path, job)


def wait_and_run(job_file: str) -> int:
    """Launcher body: wait for our turn on the device, run the CLI, record how it ended."""
    path = Path(job_file).resolve()
    root = path.parent.parent
    announced = False
    while True:
        claimed = _claim(root, path)
        if claimed is False:
            print("[dashboard] job cancelled before it started", flush=True)
            return 0
        if claimed:
            job = claimed
            staging = Path(job.staging)
            break
        if not announced:
            print("[dashboard] queued: waiting for the device to be free", flush=True)
            announced = True
        time.sleep(POLL_SECONDS)

    # SIGTERM/SIGINT reach the whole group: the CLI stops cleanly, the launcher waits for it.
    # A Python handler (not SIG_IGN) so the child starts with the default disposition.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: print("[dashboard] stop requested", flush=True))
    final = Path(job.log)
    linked = final.parent.exists()
    into_staging = not linked
    out = open(final if linked else staging, "ab")
    out.write(f"[dashboard] {utc_now()} starting: {' '.join(job.argv)}\n".encode())
    out.flush()
    try:
        proc = subprocess.Popen(
            job.argv,
            cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env(),
        )
    except OSError as exc:
        out.write(f"[dashboard] could not start {job.argv[0]}: {exc}\n".encode())
        out.close()
        _finish(root, path, 127)
        return 1
    while proc.poll() is None or _group_members(os.getpgrp()):
        # also wait for grandchildren: a sweep's current training run keeps checkpointing
        # after the sweep process itself has died of the SIGTERM
        if not linked:
            linked = _link_log(staging, final)
        time.sleep(0.5)
    if not linked:
        linked = _link_log(staging, final)
    out.write(f"[dashboard] {utc_now()} exited with code {proc.returncode}\n".encode())
    out.close()
    if linked:
        if into_staging and not final.samefile(staging):  # copied, not linked: bring the copy up to date
            shutil.copyfile(staging, final)
        staging.unlink(missing_ok=True)
    _finish(root, path, proc.returncode)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m app.launcher RUNS/.queue/JOB.json")
    sys.exit(wait_and_run(sys.argv[1]))
