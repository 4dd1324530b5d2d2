"""The one atomic-write helper (adakd/runs/atomic.py) and the one timestamp format (adakd/runs/timestamps.py).

Files written atomically get the permissions `open()` would give them (0666 minus the umask),
whichever writer uses the helper: run files, exported figures, report bundles, job files.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime

import pandas as pd
import plotly.graph_objects as go
import pytest

from adakd.runs.atomic import TEMP_NAME, atomic_path, write_bytes_atomic, write_text_atomic
from adakd.runs.rundir import remove_temp_files, write_json_atomic, write_parquet_atomic
from adakd.runs.timestamps import parse_utc, utc_now


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_permissions_follow_the_umask_like_open(tmp_path, umask, mask, expected):
    umask(mask)
    write_bytes_atomic(tmp_path / "a.bin", b"data")
    with open(tmp_path / "plain.bin", "wb") as f:  # what a plain open() gives, for comparison
        f.write(b"data")
    assert _mode(tmp_path / "a.bin") == expected == _mode(tmp_path / "plain.bin")


def _export_html(path):
    from analysis.export import export_many

    export_many({path.stem: go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))}, "html", path.parent)


def _bundle(path):
    from analysis.bundle import report_bundle

    report_bundle({}, {"frame": pd.DataFrame({"x": [1]})}, [], formats=("html",), out_path=path)


def _job_file(path):
    from app import jobs

    job = jobs.Job(id="j", kind="train", argv=[], run_dir="r", log="l", staging="s", device="cpu", created_at="t")
    jobs.write_job(path, job)


WRITERS = {
    "fig.html": _export_html,
    "bundle.zip": _bundle,
    "job.json": _job_file,
    "status.json": lambda path: write_json_atomic(path, {"state": "running"}),
    "tokens.parquet": lambda path: write_parquet_atomic(path, pd.DataFrame({"step": [1]})),
    "page.md": lambda path: write_text_atomic(path, "# page\n"),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_writer_leaves_a_file_readable_by_others_under_umask_022(tmp_path, umask, name):
    umask(0o022)
    path = tmp_path / name
    WRITERS[name](path)
    assert _mode(path) == 0o644
    beside = {"fig.html": ["plotly.min.js"]}.get(name, [])  # an HTML export's shared plotly.js
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, *beside])  # no temp file left
    assert all(_mode(tmp_path / other) == 0o644 for other in beside)


def test_replaces_the_whole_file(tmp_path):
    path = tmp_path / "a.json"
    path.write_text("old, longer than the new content")
    write_text_atomic(path, "{}")
    assert path.read_text() == "{}"


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"old": true}')
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_killed_writers_temp_file_is_recognised_as_a_leftover(tmp_path):
    path = tmp_path / "status.json"
    with atomic_path(path) as tmp:
        assert tmp.parent == tmp_path and TEMP_NAME.match(tmp.name)
        left_behind = tmp.with_name(tmp.name.replace(".tmp", "x.tmp"))
        left_behind.write_text("")  # what a kill between create and rename leaves
        tmp.write_text("{}")
    assert remove_temp_files(tmp_path) == [left_behind]
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_creates_the_folder(tmp_path):
    write_bytes_atomic(tmp_path / "new" / "a.bin", b"x")
    assert (tmp_path / "new" / "a.bin").read_bytes() == b"x"


def test_utc_now_is_iso_seconds_with_z_and_parses_back():
    before = datetime.now(UTC).replace(microsecond=0)
    stamp = utc_now()
    after = datetime.now(UTC)
    assert len(stamp) == 20 and stamp.endswith("Z") and stamp[10] == "T"
    assert before <= parse_utc(stamp) <= after


@pytest.mark.parametrize(
    "stamp,expected",
    [
        ("2026-01-02T03:04:05Z", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        # job files of earlier versions: isoformat() with microseconds and an offset
        ("2026-01-02T03:04:05.123456+00:00", datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        ("2026-01-02T04:04:05+01:00", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2026-01-02T03:04:05", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_parse_utc_reads_both_formats(stamp, expected):
    assert parse_utc(stamp) == expected


def test_parse_utc_refuses_text():
    with pytest.raises(ValueError):
        parse_utc("yesterday")
