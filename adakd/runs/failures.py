"""Failures as one short line: what went wrong, in words a user can act on.

The CLI prints every failure as one line (a traceback only with --debug) and status.json
records the same text. Library errors are often long or misleading for that: torch's
refusal to unpickle a file spans a page and advises `weights_only=False` (which would run
whatever the file contains: never relay it), and a full disk while torch saves a tensor file
reads "[enforce fail at inline_container.cc:672] ... file write failed". `describe` turns
them into one line; `is_disk_full` tells a full disk apart from other write errors.
"""

from __future__ import annotations

import errno

_TORCH_WRITE_FAILED = ("enforce fail at inline_container.cc", "PytorchStreamWriter failed writing", "file write failed")
MAX_LENGTH = 300  # characters of a library message kept in the line


def is_disk_full(err: BaseException) -> bool:
    """True for ENOSPC / EDQUOT, and for torch's zip writer failing to write (what a full disk
    looks like from torch.save, which drops the errno)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and any(part in text for part in _TORCH_WRITE_FAILED)


def is_unsafe_pickle(err: BaseException) -> bool:
    """True for torch.load(weights_only=True) refusing a file that is not plain tensors."""
    return "weights_only" in str(err) or type(err).__name__ == "UnpicklingError"


def first_line(text: object) -> str:
    """The first non-empty line of `text`, shortened to MAX_LENGTH characters."""
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= MAX_LENGTH else line[: MAX_LENGTH - 1] + "…"


def describe(err: BaseException) -> str:
    """One line for `err`: its type and first line, a full disk or an unsafe file named as such."""
    if is_disk_full(err):
        where = getattr(err, "filename", None)
        return (
            f"disk full (No space left on device){f' writing {where}' if where else ''}: free some space, then resume"
        )
    if is_unsafe_pickle(err):
        return "a tensor file holds more than plain tensors (refused to unpickle it; it may be damaged or not ours)"
    if isinstance(err, OSError) and err.strerror:
        where = f": {err.filename}" if err.filename else ""
        return f"{err.strerror}{where}"
    name = type(err).__name__
    if type(err).__module__.startswith("adakd."):  # ours (DataError, CheckpointError, ...) say what to do
        return str(err).strip().splitlines()[0] if str(err).strip() else name
    text = first_line(err)
    return f"{name}: {text}" if text else name
