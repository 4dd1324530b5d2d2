"""Build an expensive fixture's folder once per test session, shared by the pytest-xdist workers."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def build_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> object:
    """`build(folder)`'s JSON-able result, built into `folder` once per test session.

    pytest-xdist runs a module-scoped fixture once in *each* worker that runs one of the module's
    tests; for fixtures that train and kill real runs that doubles tens of seconds of CPU. The
    workers of one session share the parent of their base temp folders, so the first worker builds
    there under a file lock and the others wait for it, then reuse the folder. Users must treat
    what they did not build themselves as read-only or as theirs alone (each test its own part).
    A failed build leaves no marker, so the next user builds again and fails on its own.
    """
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # one folder per session, common to its workers
    folder, marker = shared / f"once-{name}", shared / f"once-{name}.json"
    with FileLock(str(shared / f"once-{name}.lock")):
        if not marker.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            result = build(folder)
            staged = marker.with_name(marker.name + ".tmp")
            staged.write_text(json.dumps(result))
            staged.rename(marker)
        return json.loads(marker.read_text())
