"""Tolerant readers for the files of a run directory (docs/contracts.md, format 1).

A run directory is written by a process that may be killed at any moment, and it may be
copied around or damaged by hand. These readers never raise on bad content: each returns
what it could read plus a list of human-readable problems ("metrics.jsonl line 7: not
valid JSON, skipped"). A missing file is not a problem here; the caller decides whether
the file was required.

JSONL files are read with `adakd.runs.rundir.read_jsonl_report` (the trainer's own tolerant
reader); this module adds what that one does not report: why a JSON file or a parquet
table could not be read.

Usage:
    data, problems = read_json(path)
    records, problems = read_jsonl(path)
    frame, problems = read_parquet(path, columns=TOKEN_COLUMNS)
    metrics = frame_from_rows(records, METRIC_COLUMNS, "metrics.jsonl", problems)
    evals, kept = eval_frame(records, problems)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from adakd.runs.columns import (  # noqa: F401 (the *_COLUMNS are re-exported: analysis reads them from here)
    EVAL_COLUMNS,
    EVAL_EXTRA,
    EVENT_COLUMNS,
    GRADIENT_COLUMNS,
    LATER_COLUMNS,
    METRIC_COLUMNS,
    PANDAS_DTYPES,
    TOKEN_COLUMNS,
)
from adakd.runs.rundir import read_jsonl_report

log = logging.getLogger(__name__)


def read_json(path: Path) -> tuple[dict | None, list[str]]:
    """One JSON object from `path`; (None, []) when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        return None, [f"{path.name}: not UTF-8 text"]
    except json.JSONDecodeError as err:
        return None, [f"{path.name}: not valid JSON ({err.msg} at line {err.lineno})"]
    except RecursionError:  # json.loads on very deep nesting ("[[[[…") raises this, not ValueError
        return None, [f"{path.name}: not valid JSON (nested too deeply)"]
    except OSError as err:
        return None, [f"{path.name}: cannot be read ({err.strerror})"]
    if not isinstance(data, dict):
        return None, [f"{path.name}: expected a JSON object, found {type(data).__name__}"]
    return data, []


def read_parquet(path: Path, columns: dict[str, str]) -> tuple[pd.DataFrame, list[str]]:
    """The table in `path` with at least `columns` ({name: "int" | "float" | "bool" | "str"}).

    Missing file -> an empty frame with those columns and no problem. Unreadable file
    (truncated, not parquet) -> an empty frame and a problem. Missing columns are added
    (filled with NA) and reported, so figure code can rely on the documented columns.
    """
    path = Path(path)
    if not path.exists():
        return empty_frame(columns), []
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several unrelated types for damaged files
        problem = f"{path.name}: unreadable ({type(err).__name__}: {_first_line(err)})"
        return empty_frame(columns), [problem]
    problems: list[str] = []
    return coerce(frame, columns, path.name, problems), problems


def empty_frame(columns: dict[str, str]) -> pd.DataFrame:
    """An empty DataFrame with the given {name: kind} columns."""
    return pd.DataFrame({name: pd.Series(dtype=PANDAS_DTYPES[kind]) for name, kind in columns.items()})


def coerce(frame: pd.DataFrame, columns: dict[str, str], source: str, problems: list[str]) -> pd.DataFrame:
    """Give the documented columns their kind ("int", "float", "bool", "str") in place.

    int columns stay numpy int64 unless they hold missing values (then pandas "Int64");
    values that do not parse become NA and are reported. Missing columns are added as NA
    and reported, except those added to format 1 later (``LATER_COLUMNS``: a run written before
    them is not damaged). Extra columns are kept as they are.
    """
    missing = [name for name in columns if name not in frame.columns]
    reported = [name for name in missing if name not in LATER_COLUMNS]
    if reported:
        problems.append(f"{source}: missing columns {', '.join(reported)}")
    for name, kind in columns.items():
        if name in missing:
            frame[name] = _na_column(kind, frame.index)
            continue
        column = frame[name]
        if kind in ("int", "float"):
            numeric = pd.to_numeric(column, errors="coerce")
            if int(numeric.isna().sum()) > int(column.isna().sum()):
                problems.append(f"{source}: column {name} has non-numeric values (set to NA)")
            if kind == "float":
                numeric = numeric.astype("float64")
            elif numeric.isna().any():
                numeric = numeric.astype("Int64")
            elif numeric.dtype.kind != "i":
                numeric = numeric.astype("int64")
            frame[name] = numeric
        elif kind == "bool" and column.dtype != bool:
            try:
                frame[name] = column.astype("boolean")
            except (TypeError, ValueError):
                problems.append(f"{source}: column {name} is not boolean (set to NA)")
                frame[name] = _na_column(kind, frame.index)
    return frame


def _na_column(kind: str, index: pd.Index) -> pd.Series:
    dtype = {"int": "Int64", "float": "float64", "bool": "boolean", "str": "str"}[kind]
    return pd.Series(pd.NA if kind != "float" else float("nan"), index=index, dtype=dtype)


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else ""


def read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Records and problems of a JSONL file; a truncated last line is skipped silently
    (a killed or still-running writer), damaged lines are reported."""
    try:
        report = read_jsonl_report(path)
    except OSError as err:
        return [], [f"{path.name}: cannot be read ({err.strerror or err})"]
    return report.records, report.problems


def frame_from_rows(rows: list[dict], columns: dict[str, str], source: str, problems: list[str]) -> pd.DataFrame:
    """JSON lines -> frame; lines without an integer step are dropped and reported."""
    good = [r for r in rows if isinstance(r.get("step"), int) and not isinstance(r["step"], bool)]
    if len(good) < len(rows):
        problems.append(f"{source}: {len(rows) - len(good)} line(s) without an integer step, skipped")
    if not good:
        return empty_frame(columns)
    frame = pd.DataFrame.from_records(good)
    # Only report a missing column when no line has it: optional fields (regime, extras) vary.
    quiet: list[str] = []
    frame = coerce(frame, columns, source, quiet)
    problems += [p for p in quiet if "missing columns" not in p]
    return frame


def _number_or_none(value):
    return value if _is_number(value) else None


def eval_frame(records: list[dict], problems: list[str]) -> tuple[pd.DataFrame, list[dict]]:
    """eval.jsonl records -> long frame (one row per record and dataset, plus "average")."""
    rows, kept = [], []
    for number, record in enumerate(records, start=1):
        scores = record.get("rouge_l")
        if (
            not isinstance(record.get("step"), int)
            or not isinstance(record.get("model"), str)
            or not isinstance(scores, dict)
        ):
            problems.append(f"eval.jsonl record {number}: needs step, model and rouge_l, skipped")
            continue
        if not all(_is_number(v) or v is None for v in scores.values()):
            problems.append(f"eval.jsonl record {number}: rouge_l has non-numeric scores, skipped")
            continue
        kept.append(record)
        counts = record["n"] if isinstance(record.get("n"), dict) else {}
        extra: dict[str, dict] = {k: record[k] if isinstance(record.get(k), dict) else {} for k in EVAL_EXTRA}
        for dataset, score in scores.items():
            rows.append(
                {
                    "step": record["step"],
                    "model": record["model"],
                    "dataset": dataset,
                    "rouge_l": score,
                    "n": counts.get(dataset),
                    **{k: _number_or_none(extra[k].get(dataset)) for k in EVAL_EXTRA},
                }
            )
        average = record.get("rouge_l_avg")
        numbers = [v for v in scores.values() if _is_number(v)]
        if not _is_number(average):
            average = sum(numbers) / len(numbers) if numbers else None
        total = sum(v for v in counts.values() if _is_number(v)) if counts else None
        rows.append(
            {
                "step": record["step"],
                "model": record["model"],
                "dataset": "average",
                "rouge_l": average,
                "n": total,
                **{k: _number_or_none(record.get(f"{k}_avg")) for k in EVAL_EXTRA},
            }
        )
    if not rows:
        return empty_frame(EVAL_COLUMNS), kept
    frame = coerce(pd.DataFrame(rows), EVAL_COLUMNS, "eval.jsonl", problems)
    # A resumed run may evaluate the same step twice: the last record wins.
    frame = frame.drop_duplicates(["step", "model", "dataset"], keep="last")
    return frame.sort_values(["step", "model"], kind="stable").reset_index(drop=True), kept


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def checkpoint_steps(path: Path) -> list[int]:
    """Steps of complete checkpoints (step-000123/ holding model.safetensors; not *.tmp)."""
    steps = []
    folder = path / "checkpoints"
    if folder.is_dir():
        for child in folder.iterdir():
            name = child.name
            if name.startswith("step-") and name[5:].isdigit() and (child / "model.safetensors").exists():
                steps.append(int(name[5:]))
    return sorted(steps)
