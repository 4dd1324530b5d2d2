"""The run directory (docs/contracts.md, format 1): crash-safe writers and tolerant readers.

Writers never leave a half-written file: whole files go to a temp name in the same folder,
are fsync'ed and renamed over the target (atomic on POSIX); JSONL appends write one complete
line, flush and fsync. Readers tolerate what a killed writer can leave behind (a truncated
last JSONL line) and report, rather than raise on, damaged lines. analysis/ reads runs
through these functions too.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import platformdirs

from adakd.runs.atomic import TEMP_NAME, atomic_path, fsync_dir, write_bytes_atomic
from adakd.runs.timestamps import utc_now

log = logging.getLogger(__name__)

FORMAT = 1
CONFIG, STATUS, METRICS, EVENTS, EVAL = "config.json", "status.json", "metrics.jsonl", "events.jsonl", "eval.jsonl"
TOKENS, GRADIENTS, CHECKPOINTS = "tokens.parquet", "gradients.parquet", "checkpoints"
STATES = ("running", "finished", "stopped", "failed")


def runs_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding runs, absolute: `root` when given (the CLI's --root), else
    $ADAKD_RUNS, else `runs/` in the user data directory (platformdirs, e.g.
    ~/.local/share/adakd/runs on Linux), so the default does not depend on the working
    directory. The folder may not exist yet: writers create it."""
    chosen = root or os.environ.get("ADAKD_RUNS") or platformdirs.user_data_path("adakd", appauthor=False) / "runs"
    return Path(chosen).expanduser().resolve()


def check_run_name(name: str) -> str:
    """Return `name` if it is a safe single folder name, else raise ValueError saying why."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("run name is empty: give a name such as demo-1")
    if "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"run name {name!r} contains a path separator: use --run-dir for a path")
    if ".." in name:
        raise ValueError(f"run name {name!r} contains '..': choose a plain name")
    if name.startswith("."):
        raise ValueError(f"run name {name!r} starts with '.': hidden names are not allowed")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._=+,@-]*", name):
        raise ValueError(f"run name {name!r} has characters other than letters, digits and ._=+,@-")
    return name


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None so the output is strict JSON (readable in browsers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n").encode())


def write_jsonl_atomic(path: Path, records: list[dict]) -> None:
    text = "".join(json.dumps(_json_safe(r), allow_nan=False) + "\n" for r in records)
    write_bytes_atomic(path, text.encode())


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line, flushed and fsync'ed (a crash loses at most this line).

    When the file ends mid-line (a writer was killed, e.g. during an evaluation that `adakd
    eval` now appends to), the record starts on a new line: never glued to the fragment.
    """
    data = (json.dumps(_json_safe(record), allow_nan=False) + "\n").encode("utf-8")
    with open(path, "ab+") as f:  # append mode: writes go to the end whatever the position
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                data = b"\n" + data
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_parquet_atomic(path: Path, frame) -> None:
    """Write a pandas DataFrame as parquet, atomically (adakd/runs/atomic.py)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _step_of(record: dict) -> int:
    """A record's step as an int (a record with a damaged step sorts after every step)."""
    try:
        return int(record.get("step", 0))
    except (TypeError, ValueError):
        return 2**62


def damaged_name(path: Path) -> Path:
    """`<name>.damaged-<UTC time>` beside `path`: where a damaged file is kept (docs/contracts.md)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return path.with_name(f"{path.name}.damaged-{stamp}")


def move_aside(path: Path) -> Path:
    """Rename a damaged file to `<name>.damaged-<time>` (never overwrite it); return the new path."""
    target = damaged_name(Path(path))
    os.replace(path, target)
    fsync_dir(target.parent)
    return target


def keep_damaged_copy(path: Path) -> Path:
    """Copy a damaged file to `<name>.damaged-<time>` before it is rewritten; return the copy."""
    target = damaged_name(Path(path))
    write_bytes_atomic(target, Path(path).read_bytes())
    return target


def remove_temp_files(folder: Path) -> list[Path]:
    """Delete the temp files of atomic writes that a killed writer left in `folder` (only safe
    for the writer holding the run's lock: no other write can be under way)."""
    removed = []
    for child in Path(folder).iterdir() if Path(folder).is_dir() else []:
        if TEMP_NAME.match(child.name) and child.is_file():
            child.unlink(missing_ok=True)
            removed.append(child)
    return removed


def read_json(path: Path, default: Any = None) -> Any:
    """Parsed JSON, or `default` when the file is missing or not valid JSON (logged)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError, RecursionError) as err:  # RecursionError: "[[[[…" nested too deeply
        log.warning("could not read %s: %s", path, err)
        return default


def recorded_config(run_dir: Path) -> dict | None:
    """The config fields a run folder's config.json records (its "config" object, as the
    trainer wrote it); None when the file is missing, unreadable or has no such object, which
    is what a run killed before its first write leaves."""
    document = read_json(Path(run_dir) / CONFIG)
    if not isinstance(document, dict) or not isinstance(document.get("config"), dict):
        return None
    return document["config"]


@dataclass
class JsonlRead:
    """Records of a JSONL file plus the problems found (1-based line numbers)."""

    records: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    truncated: bool = False  # the last line had no newline and did not parse (killed writer)


def read_jsonl_report(path: Path) -> JsonlRead:
    """Read a JSONL file without raising: skips a truncated last line and damaged lines."""
    out = JsonlRead()
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    lines = text.split("\n")
    last_complete = text.endswith("\n")
    for i, line in enumerate(lines, start=1):
        if not line.strip(" \t\r"):  # JSON's own white space only: str.strip() would also eat
            continue  # control characters such as \x1c, hiding a damaged line
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # RecursionError: a line of "[[[[…" nested too deeply
            if i == len(lines) and not last_complete:
                out.truncated = True
                continue
            out.problems.append(f"{Path(path).name} line {i}: not valid JSON: {line[:80]!r}")
            continue
        if not isinstance(record, dict):
            out.problems.append(f"{Path(path).name} line {i}: not a JSON object")
            continue
        out.records.append(record)
    return out


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file; a truncated last line is skipped, damaged lines are logged."""
    result = read_jsonl_report(path)
    for problem in result.problems:
        log.warning(problem)
    return result.records


def pid_alive(pid: int) -> bool:
    """True when process `pid` exists on this host and is not a zombie."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child that nobody reaped yet still answers kill(0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def latest_step(status: dict | None, last_logged: Any) -> int | None:
    """A run's step: status.json's, or the last metrics line's when that is newer (status.json
    is rewritten at most every 2 s while running; every logged step appends its line at once)."""
    step = (status or {}).get("step")
    if isinstance(last_logged, int) and (not isinstance(step, int) or last_logged > step):
        return last_logged
    return step


def effective_state(status: dict | None) -> str:
    """The state a reader should show: status.json's state, or "crashed" for a run marked
    running whose process (on this host) is gone; "unknown" without a status file."""
    if not status:
        return "unknown"
    state = status.get("state", "unknown")
    if state == "running":
        same_host = status.get("host") in (None, socket.gethostname())
        if same_host and not pid_alive(status.get("pid", -1)):
            return "crashed"
    return state


class RunDir:
    """One run directory: paths, writers and readers (see docs/contracts.md)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.resolve().name

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    def create(self) -> None:
        """Create the folder; refuse a non-empty existing one (never mix two runs). The lock
        file that the starting writer holds (adakd.runs.runlock) does not count."""
        from adakd.runs.runlock import only_lock_inside

        if not only_lock_inside(self.path):
            raise ValueError(
                f"run directory {self.path} already exists and is not empty: "
                "resume it, or choose another name / --run-dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints.mkdir(exist_ok=True)

    # writers
    def write_json(self, name: str, obj: Any) -> None:
        write_json_atomic(self.file(name), obj)

    def append(self, name: str, record: dict) -> None:
        append_jsonl(self.file(name), record)

    def event(self, step: int, kind: str, message: str, **extra: Any) -> None:
        self.append(EVENTS, {"step": step, "kind": kind, "message": message, "time": utc_now(), **extra})

    def set_status(
        self, state: str, *, step: int, total_steps: int, error: str | None = None, last_checkpoint: int | None = None
    ) -> dict:
        if state not in STATES:
            raise ValueError(f"status state {state!r} must be one of {', '.join(STATES)}")
        status = {
            "state": state,
            "step": step,
            "total_steps": total_steps,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "error": error,
            "updated_at": utc_now(),
            "last_checkpoint": last_checkpoint,
        }
        self.write_json(STATUS, status)
        return status

    def write_parquet(self, name: str, frame) -> None:
        write_parquet_atomic(self.file(name), frame)

    def truncate_after(self, step: int) -> list[str]:
        """Drop JSONL records with step > `step` (resume: the log continues without duplicates).

        A file with damaged lines is first copied aside whole (`<name>.damaged-<time>`), so the
        rewrite never loses what could not be read. Returns the problems found (with where the
        copy went), for the caller to report.
        """
        reported = []
        for name in (METRICS, EVENTS, EVAL):
            path = self.file(name)
            if path.exists():
                read = read_jsonl_report(path)
                if read.problems:
                    copy = keep_damaged_copy(path)
                    reported += [f"{p} (the file as it was: {copy.name})" for p in read.problems]
                kept = [r for r in read.records if _step_of(r) <= step]
                write_jsonl_atomic(path, kept)
        return reported

    # readers
    def read_config(self) -> dict | None:
        return read_json(self.file(CONFIG))

    def read_status(self) -> dict | None:
        return read_json(self.file(STATUS))

    def effective_state(self) -> str:
        return effective_state(self.read_status())

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.file(METRICS))

    def read_events(self) -> list[dict]:
        return read_jsonl(self.file(EVENTS))

    def read_eval(self) -> list[dict]:
        return read_jsonl(self.file(EVAL))

    def read_parquet(self, name: str):
        """The parquet file as a DataFrame, or None when missing or unreadable (logged)."""
        import pandas as pd

        path = self.file(name)
        if not path.exists():
            return None
        try:
            return pd.read_parquet(path)
        except Exception as err:  # a damaged file is reported, not raised
            log.warning("could not read %s: %s", path, err)
            return None
