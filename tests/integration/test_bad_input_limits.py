"""Bad input of issue 17, end to end: input limits and the messages that used to be wrong.

Beside tests/test_bad_input.py: each case exits with code 2 (CLI) or shows an error box with no
Start button (dashboard), says what to fix in one line, prints no traceback and writes nothing.
The limits themselves (adakd/runs/limits.py) are checked directly too, including that a huge line
is refused without ever being read whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adakd.cli import main
from adakd.data.instructions import load_examples
from adakd.runs import limits
from tests.integration.test_bad_input import SMOKE, _train_page, nothing_written, refused_train

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
RECORD = '{"instruction": "Hi", "response": "Hello"}\n'


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    base = tmp_path_factory.mktemp("limits")
    out = {}
    with open(base / "huge-line.jsonl", "wb") as f:  # one 60 MB record (written in pieces)
        f.write(b'{"instruction": "Hi", "response": "')
        for _ in range(60):
            f.write(b"x" * (1 << 20))
        f.write(b'"}\n')
    out["huge-line.jsonl"] = base / "huge-line.jsonl"
    contents = {
        "deep.jsonl": RECORD + "[" * 100_000 + "\n",
        "deep.json": "[" + "[" * 100_000 + "]" * 100_000 + "]",
        "big-record.json": json.dumps([{"instruction": "Hi", "response": "x" * (2 << 20)}]),
        "no-instruction.jsonl": '{"response": "Hello"}\n',
        "fine.jsonl": RECORD * 3,
    }
    for name, text in contents.items():
        (base / name).write_text(text)
        out[name] = base / name
    return out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "data={huge-line.jsonl}"], "line 1: longer than 1 MiB, the most a data line (one record) may have"),
        (["--set", "data={deep.jsonl}"], "line 2: JSON nested more than 64 levels deep"),
        (["--set", "data={deep.json}"], "JSON nested more than 64 levels deep"),
        (["--set", "data={big-record.json}"], "line 1: a record of 2 MiB is larger than the 1 MiB"),
        (["--set", "eval_data={huge-line.jsonl}"], "line 1: longer than 1 MiB"),
        (
            ["--set", "max_steps=99999999999999999999999"],
            "max_steps = 99999999999999999999999 is out of range: must be in [1, 10,000,000]",
        ),
        (["--set", "batch_size=100000"], "batch_size = 100000 is out of range: must be in [1, 4,096]"),
        (["--set", "seed=99999999999"], "seed = 99999999999 is out of range"),
        (["--set", "eval_max_new_tokens=10000000"], "eval_max_new_tokens = 10000000 is out of range"),
        (
            ["--set", "data={no-instruction.jsonl}"],
            "field 'instruction': missing; each record needs 'instruction' and a response ('response' or 'output')",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_cli_refuses_input_over_the_limits(tmp_path, monkeypatch, capsys, files, args, message):
    err = refused_train(tmp_path, monkeypatch, capsys, args, files)
    assert message in err and "'instruction' and 'instruction'" not in err, err[-2000:]


PEAK = """
import sys, runpy
try:
    runpy.run_module("adakd", run_name="__main__", alter_sys=True)
finally:  # this process's own high-water mark (getrusage would include the forking parent's)
    print([line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].strip(), file=sys.stderr)
"""


def test_a_60_mb_line_is_refused_within_500_mb(tmp_path, files):
    """A real process: refused before any model loads, with peak memory far from the 15 GB the
    line once cost (the check reads at most 1 MiB of the line)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK,
            *SMOKE,
            "--set",
            f"data={files['huge-line.jsonl']}",
            "--run-dir",
            str(tmp_path / "victim"),
        ],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "longer than 1 MiB" in done.stderr and "Traceback" not in done.stderr
    peak_mb = int(done.stderr.split("VmHWM:")[1].split()[0]) / 1024  # kB
    print(f"peak RSS refusing a 60 MB line: {peak_mb:.0f} MB")
    assert peak_mb < 500, peak_mb
    assert not (tmp_path / "victim").exists()


def test_the_line_check_never_reads_a_huge_line_whole(files, monkeypatch):
    reads = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def readline(self, size=-1):
            assert 0 < size <= limits.MAX_LINE_BYTES + 1  # always bounded
            line = self.f.readline(size)
            reads.append(len(line))
            return line

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(limits, "open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False)
    with pytest.raises(limits.LimitError, match="line 1: longer than 1 MiB"):
        limits.check_data_file(files["huge-line.jsonl"])
    assert max(reads) <= limits.MAX_LINE_BYTES + 1 and len(reads) == 1


def test_the_limits_module_directly(files, tmp_path):
    assert limits.json_depth_exceeds("[" * 100_000)
    assert not limits.json_depth_exceeds('{"a": "[[[[[[[[" , "b": [1, [2]]}', limit=3)  # brackets in strings
    assert limits.json_depth_exceeds("[[[[1]]]]", limit=3)
    with pytest.raises(limits.LimitError, match="line 2: JSON nested more than 64 levels deep"):
        load_examples(str(files["deep.jsonl"]))  # the loader checks too (not RecursionError)
    assert len(load_examples(str(files["fine.jsonl"]))) == 3
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + RECORD.encode() * 2)
    assert len(load_examples(str(bom))) == 2  # a UTF-8 byte-order mark still reads


@pytest.mark.parametrize(
    "argv, message, banned",
    [
        (["resume", "{file}"], "is a file, not a run folder: give the run's folder or its name", "--run-dir"),
        (["eval", "{file}"], "is a file, not a run folder", "--run-dir"),
        (["resume", "a/../../b"], "no run folder 'a/../../b'", "--run-dir"),
    ],
)
def test_cli_run_arguments_get_a_message_that_fits(tmp_path, monkeypatch, capsys, argv, message, banned):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "runs"))
    some_file = tmp_path / "notes.txt"
    some_file.write_text("not a run")
    assert main([a.replace("{file}", str(some_file)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and banned not in err and err.count("\n") == 1, err


def test_train_form_applies_the_same_limits(tmp_path, monkeypatch, files):
    at = _train_page(tmp_path, monkeypatch)
    at.text_input(key="train-name-single-smoke").input("fine-name").run()
    for extra, message in (
        (f"data={files['huge-line.jsonl']}", "line 1: longer than 1 MiB"),
        (f"data={files['deep.jsonl']}", "line 2: JSON nested more than 64 levels deep"),
        ("max_steps=99999999999999999999999", "is out of range: must be in [1, 10,000,000]"),
    ):
        at.text_area(key="train-smoke-extra").input(extra).run()
        errors = " ".join(e.value for e in at.error)
        assert message in errors, (extra, errors)
        assert not [b for b in at.button if b.key == "train-launch"], extra
        assert not at.exception
    nothing_written(tmp_path / "runs")


def test_deeply_nested_yaml_is_refused_not_a_crash(tmp_path):
    """libyaml's composer recurses in C: 100,000 `[` once killed the process with a segfault."""
    deep = tmp_path / "deep.yml"
    deep.write_text("categories:\n- x\nconversations:\n- " + "[" * 100_000 + "\n")
    with pytest.raises(limits.LimitError, match="YAML nested more than 64 levels deep"):
        limits.check_data_file(deep)
    done = subprocess.run(
        [sys.executable, "-c", f"from adakd.data.instructions import load_examples; load_examples({str(deep)!r})"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "YAML nested more than 64 levels deep" in done.stderr, done.stderr[-2000:]
