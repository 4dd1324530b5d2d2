"""One writer per run directory: an exclusive lock file, `<run>/.lock` (docs/contracts.md).

Every process that writes a run (train, resume, `adakd eval`, the dashboard's delete) takes the
lock before it loads anything and keeps it until it is done; a second writer is refused at
once with one line naming the holder. The lock is the kernel's (flock, through the `filelock`
package, through a read-only descriptor), so it dies with its process: a kill -9 leaves
nothing to clean up, and no stale pid check is needed. The holder's pid is written into the
lock file only to name it in the message.

Within one process the lock is re-entrant (the CLI takes it, then `train` / `resume` /
`evaluate_run` take it again as library functions), and released when the outermost holder
leaves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import Timeout, UnixFileLock

LOCK_NAME = ".lock"

_held: dict[Path, list] = {}  # resolved run path -> [FileLock, depth] held by this process


class RunBusy(RuntimeError):
    """Another process holds the run's lock; str() is the one line to show."""


class _ReadOnlyLock(UnixFileLock):
    """filelock's flock, held through a read-only descriptor.

    A training process holds its lock for hours; a descriptor open for writing would keep the
    run's disk from being remounted read-only ("mount point is busy"), which an administrator
    (or the read-only-disk fault test) may need. flock needs no write access, so the file is
    created once and then opened read-only. This overrides filelock's `_open_lock_file`, a
    private method: filelock is pinned (requirements.txt), and the fault tests notice a change.
    """

    def _open_lock_file(self) -> tuple[int, bool] | None:
        nofollow = getattr(os, "O_NOFOLLOW", 0)
        created = False
        try:
            os.close(os.open(self.lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | nofollow, 0o644))
            created = True
        except FileExistsError:
            pass
        try:
            return os.open(self.lock_file, os.O_RDONLY | os.O_NONBLOCK | nofollow), created
        except FileNotFoundError:
            return None  # unlinked in between: filelock's retry loop tries again


def _write_pid(path: Path) -> None:
    """Record the holder's pid in the lock file (only to name it in a contender's message)."""
    try:
        path.write_text(str(os.getpid()))
    except OSError:  # a read-only disk: the lock still holds, the message names no pid
        pass


def lock_holder(path: str | os.PathLike) -> int | None:
    """The pid written in the run's lock file (the last holder's; None when unreadable)."""
    try:
        return int((Path(path) / LOCK_NAME).read_text().strip())
    except (OSError, ValueError):
        return None


def busy_message(path: str | os.PathLike) -> str:
    from adakd.runs.rundir import pid_alive

    pid = lock_holder(path)
    who = f" (pid {pid})" if pid and pid_alive(pid) else ""  # the holder writes it just after locking
    return f"run {path} is being written by another process{who}; wait for it to end or stop it, then try again"


@contextmanager
def run_lock(path: str | os.PathLike, *, create: bool = True) -> Iterator[Path]:
    """Hold the exclusive lock of run directory `path` for the block.

    The folder is created when missing if `create`, else a missing folder is a ValueError.
    Raises RunBusy at once when another process holds the lock, OSError when the folder cannot
    be created or written. Yields the run directory's path.
    """
    path = Path(path)
    if not create and not path.is_dir():
        raise ValueError(f"no run folder {path}")
    key = path.resolve()
    if key in _held:  # this process holds it already (CLI, then the library function)
        _held[key][1] += 1
        try:
            yield path
        finally:
            _held[key][1] -= 1
        return
    path.mkdir(parents=True, exist_ok=True)
    lock = _ReadOnlyLock(str(path / LOCK_NAME), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunBusy(busy_message(path)) from None
    _write_pid(path / LOCK_NAME)
    _held[key] = [lock, 1]
    try:
        yield path
    finally:
        _held[key][1] -= 1
        if _held[key][1] == 0:
            del _held[key]
            lock.release()


def holds_lock(path: str | os.PathLike) -> bool:
    """Whether this process holds the lock of run directory `path`."""
    return Path(path).resolve() in _held


def only_lock_inside(path: str | os.PathLike) -> bool:
    """True when `path` is missing, or a folder holding nothing but the lock file: a run
    folder that a starting `train` may still fill (it takes the lock before anything else)."""
    path = Path(path)
    if not path.exists():
        return True
    return path.is_dir() and all(child.name == LOCK_NAME for child in path.iterdir())


@contextmanager
def new_run_lock(path: str | os.PathLike) -> Iterator[Path]:
    """The lock of a run about to be created in `path` (missing, or empty but for the lock).

    Refuses (ValueError) a folder that holds anything else, before and after taking the lock
    (two starts racing for one name). When the block fails before the run wrote a file, the
    lock file and the folders this call created are removed again: a refused start leaves
    nothing behind.
    """
    path = Path(path)
    if not only_lock_inside(path):
        raise ValueError(
            f"run directory {path} already exists and is not empty: resume it, or choose another name / --run-dir"
        )
    made = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    try:
        with run_lock(path):
            if not only_lock_inside(path):
                raise ValueError(
                    f"run directory {path} was just created by another process: choose another name / --run-dir"
                )
            try:
                yield path
            except BaseException:
                outermost = _held[path.resolve()][1] == 1  # a nested holder leaves the file to it
                if outermost and only_lock_inside(path):  # no run was written
                    (path / LOCK_NAME).unlink(missing_ok=True)
                raise
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # not empty (a run, or something else now lives there): keep it
                break
        raise
