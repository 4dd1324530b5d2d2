"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

The data goes to a temp file in the target's folder (`.<name>.<random>.tmp`), which is
fsync'ed, renamed over the target (atomic on POSIX) and then the folder is fsync'ed, so the
rename itself survives a crash. The temp file is created with mode 0666 filtered by the umask,
as `open()` would create the target (0644 under the usual umask 022), not with
`tempfile.mkstemp`'s owner-only 0600. A failed write removes its temp file; the leftovers of a
killed writer match `TEMP_NAME` (adakd.runs.rundir.remove_temp_files deletes them).
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")  # `.<name>.<random>.tmp`


def fsync_dir(path: Path) -> None:
    """fsync a folder (its entries: a rename in it), where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path) -> Path:
    """A new empty file `.<name>.<random>.tmp` beside `path`, mode 0666 minus the umask."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temp name beside {path}")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` to write by name (e.g. `frame.to_parquet(tmp)`); when the
    block ends without an exception the file is fsync'ed and renamed over `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace the file `path` by `data`, atomically (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """`write_bytes_atomic` of `text` in UTF-8."""
    write_bytes_atomic(path, text.encode("utf-8"))
