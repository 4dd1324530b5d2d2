"""A run's tags and free notes: `notes.json` in the run directory, written by people (the Runs
page, or by hand), never by training.

    {"format": 1, "tags": ["baseline", "lr-sweep"], "notes": "free text", "updated": ISO time}

Reading is tolerant like every run file: a missing file is no tags and no notes; a damaged one
(not JSON, wrong types) reads as empty with a problem to show, and is renamed aside
(`notes.json.damaged-<time>`) before a new one is written, never overwritten. Writes are atomic
(adakd.runs.atomic), so a reader sees the old or the new file; two editors saving at once: the last
save wins. Training does not touch the file, so notes can be edited while a run trains; the
shipped sample runs are read-only (the dashboard offers no editing there).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from adakd.runs.atomic import write_text_atomic
from adakd.runs.rundir import move_aside
from adakd.runs.timestamps import utc_now

NOTES_FILE = "notes.json"
MAX_TAGS = 20
MAX_TAG_LENGTH = 40
MAX_NOTES_LENGTH = 10_000


@dataclass(frozen=True)
class RunNotes:
    tags: tuple[str, ...] = ()
    notes: str = ""
    problems: tuple[str, ...] = field(default=(), compare=False)  # what could not be read


def read_notes(run_dir: str | os.PathLike) -> RunNotes:
    """The run's tags and notes; empty (with a problem) when the file is damaged."""
    path = Path(run_dir) / NOTES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return RunNotes()
    except (OSError, ValueError, RecursionError) as err:
        return RunNotes(problems=(f"{NOTES_FILE}: not readable JSON ({err}); its tags and notes are not shown",))
    tags, notes = (data.get("tags", []), data.get("notes", "")) if isinstance(data, dict) else (None, None)
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags) or not isinstance(notes, str):
        return RunNotes(problems=(f'{NOTES_FILE}: expected {{"tags": [strings], "notes": string}}; not shown',))
    return RunNotes(tags=tuple(tags), notes=notes)


def parse_tags(text: str) -> tuple[str, ...]:
    """Comma-separated tags as typed: stripped, empty ones dropped, duplicates once (first
    spelling kept, compared case-insensitively). ValueError with what to fix when too many or
    too long."""
    tags: list[str] = []
    for raw in text.split(","):
        tag = " ".join(raw.split())
        if tag and tag.casefold() not in {t.casefold() for t in tags}:
            tags.append(tag)
    long = [t for t in tags if len(t) > MAX_TAG_LENGTH]
    if long:
        raise ValueError(f"tag {long[0][:20]!r}… is longer than {MAX_TAG_LENGTH} characters: shorten it")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{len(tags)} tags: keep at most {MAX_TAGS}")
    return tuple(tags)


def write_notes(run_dir: str | os.PathLike, tags: tuple[str, ...] | list[str], notes: str) -> RunNotes:
    """Save the run's tags and notes (atomically; a damaged old file is renamed aside first).
    ValueError with what to fix for input out of bounds or a folder that is not a run."""
    folder = Path(run_dir)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a run directory (no config.json): notes belong to a run")
    tags = parse_tags(",".join(tags))
    if len(notes) > MAX_NOTES_LENGTH:
        raise ValueError(f"the notes have {len(notes):,} characters: keep them under {MAX_NOTES_LENGTH:,}")
    path = folder / NOTES_FILE
    if path.exists() and read_notes(folder).problems:
        move_aside(path)  # damaged: kept for whoever wants it back, never replaced
    record = {"format": 1, "tags": list(tags), "notes": notes, "updated": utc_now()}
    write_text_atomic(path, json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    return RunNotes(tags=tags, notes=notes)
