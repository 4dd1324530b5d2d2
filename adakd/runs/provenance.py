"""Which code made a result: the git revision of the checkout the package runs from.

Recorded in every run's config.json (:func:`adakd.training.runsetup.run_metadata`) and in the
provenance of report bundles (:mod:`analysis.bundle`), so both read the same way.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def git_revision() -> str | None:
    """The commit of the checkout this package runs from, with "+dirty" when tracked files
    have changed; None outside git. Recorded in config.json and in report bundles."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not rev:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
