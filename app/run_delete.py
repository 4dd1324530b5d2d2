"""Deleting runs from the dashboard (no Streamlit): only real run folders under the runs root,
never a sample run, never through a link, never while another process writes the run.

Each run is deleted under its lock (adakd.runs.runlock), so a training, resume or eval process that
is writing it makes the delete refuse instead of pulling the folder from under it. The caller
gets what was deleted and, per refused run, one line saying why: the page reports exactly
that, never "Deleted" for a run that is still there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from adakd.runs.runlock import RunBusy, run_lock


def refusal(path: Path, root: Path, sample_root: Path) -> str | None:
    """Why `path` may not be deleted from the dashboard (None when it may)."""
    if path.is_symlink():  # deleting through a link would reach a folder the runs root does not own
        return f"{path.name} is a link to {path.resolve()}: not deleted (remove the link by hand)"
    target = path.resolve()
    if not target.is_dir():
        return f"{path.name} no longer exists"
    if not target.is_relative_to(root.resolve()) or target == root.resolve():
        return f"{path.name} is not a run under the runs folder {root}: not deleted"
    if target.is_relative_to(sample_root.resolve()):
        return f"{path.name} is a sample run (read-only): not deleted"
    return None


def delete_runs(paths, root, sample_root) -> tuple[list[str], list[str]]:
    """Delete the run folders `paths`; returns (names deleted, one line per run refused)."""
    root, sample_root = Path(root), Path(sample_root)
    deleted, refused = [], []
    for p in map(Path, paths):
        reason = refusal(p, root, sample_root)
        if reason:
            refused.append(reason)
            continue
        try:
            with run_lock(p, create=False):
                shutil.rmtree(p)
        except RunBusy as err:
            refused.append(str(err))
        except (OSError, ValueError) as err:
            refused.append(f"{p.name}: could not delete ({getattr(err, 'strerror', None) or err})")
        else:
            deleted.append(p.name)
    return deleted, refused
