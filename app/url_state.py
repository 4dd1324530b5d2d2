"""Page state that survives navigation and reload, and can be shared as a link.

Streamlit forgets a widget's value when its page is left (the widget is not drawn in that run)
and the whole session on reload; page navigation also clears the query string. `keep(key, …)`,
called just before the widget with that key is drawn, restores and records its value:

    1. the widget's own value, when Streamlit still has it (the user just changed it);
    2. else the session's copy (the page was left and opened again);
    3. else the URL's query parameter ``key`` (a reload, or a shared link);
    4. else ``default``;

then stores it back in the session's copy and in the URL (``?key=value``, repeated for a
list), so the address bar always holds the current page's choices. The widget itself must not
be given a default (``value=``/``default=``/``index=``): its value comes from here.

    url_state.keep("compare-metric", "kd", url_state.TEXT)
    metric = st.segmented_control("Curve", ["kd", "loss"], key="compare-metric")

Runs travel in the URL as short ids (``run_id``): a path under the runs root by its relative
path, a sample run as ``sample_runs/<relative path>``, anything else as its absolute path.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

COPY = "url-state:"  # session keys of the copies that outlive a widget


@dataclass(frozen=True)
class Codec:
    """How a value is written into the query string (a list of strings) and read back;
    ``decode`` raises ValueError for text that is not a value (the default is used then)."""

    encode: Callable[[Any], list[str]]
    decode: Callable[[list[str]], Any]


def _float(values: list[str]) -> float:
    value = float(values[0])
    if not math.isfinite(value):
        raise ValueError(values[0])
    return value


def _bool(values: list[str]) -> bool:
    if values[0] not in ("0", "1"):
        raise ValueError(values[0])
    return values[0] == "1"


def run_id(path: str) -> str:
    """The id of a run in a URL: relative to the runs root, ``sample_runs/…``, or absolute."""
    from app import state  # app.state records the selection through this module

    p = Path(path)
    for root, prefix in ((state.runs_root(), ""), (state.sample_root(), "sample_runs/")):
        try:
            return prefix + p.resolve().relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            continue
    return str(p)


def run_path(run: str) -> str:
    """The run folder of an id from ``run_id`` (unknown runs are dropped by the pickers)."""
    from app import state

    if run.startswith("sample_runs/"):
        return str(state.sample_root() / run.removeprefix("sample_runs/"))
    if Path(run).is_absolute():
        return run
    return str(Path(state.runs_root()) / run)


TEXT = Codec(lambda v: [str(v)], lambda values: values[0])
BOOL = Codec(lambda v: ["1" if v else "0"], _bool)
RUNS = Codec(lambda paths: [run_id(p) for p in paths], lambda ids: [run_path(i) for i in ids])


def number(low: float, high: float) -> Codec:
    """A float within [low, high] (a slider's range)."""

    def decode(values: list[str]) -> float:
        value = _float(values)
        if not low <= value <= high:
            raise ValueError(values[0])
        return value

    return Codec(lambda v: [f"{float(v):g}"], decode)


def integer(low: int, high: int) -> Codec:
    """An int within [low, high]."""

    def decode(values: list[str]) -> int:
        value = int(values[0])
        if not low <= value <= high:
            raise ValueError(values[0])
        return value

    return Codec(lambda v: [str(int(v))], decode)


def choice(options: Sequence[Any]) -> Codec:
    """One of ``options`` (a select box's, radio's or segmented control's), written as its str."""

    def decode(values: list[str]) -> Any:
        for option in options:
            if str(option) == values[0]:
                return option
        raise ValueError(values[0])

    return Codec(lambda v: [str(v)], decode)


def choices(options: Sequence[Any]) -> Codec:
    """Any of ``options`` (a multiselect's), written as their str; unknown ones are dropped."""

    def decode(values: list[str]) -> list[Any]:
        return [option for option in options if str(option) in values]

    return Codec(lambda v: [str(x) for x in v], decode)


def keep(key: str, default: Any, codec: Codec, valid: Callable[[Any], bool] | None = None) -> Any:
    """Restore and record the value of the widget (or session value) ``key``; returns it.
    ``default`` may be a function, called only when nothing is remembered (or when ``valid``
    refuses the remembered value: e.g. a probe example that another run does not have)."""
    session = st.session_state
    if valid is not None and key in session and not valid(session[key]):
        session[key] = default() if callable(default) else default
    if key not in session:
        if COPY + key in session:
            session[key] = session[COPY + key]
        elif key in st.query_params:
            try:
                session[key] = codec.decode(st.query_params.get_all(key))
            except (ValueError, IndexError):  # a hand-edited or stale link: the default instead
                session[key] = default() if callable(default) else default
        else:
            session[key] = default() if callable(default) else default
        if valid is not None and not valid(session[key]):
            session[key] = default() if callable(default) else default
    value = session[key]
    session[COPY + key] = value
    record(key, value, codec)
    return value


def record(key: str, value: Any, codec: Codec) -> None:
    """Write ``value`` into the URL as ``?key=…`` (removed when it encodes to nothing)."""
    encoded = codec.encode(value) if value is not None else []
    if encoded:
        st.query_params[key] = encoded if len(encoded) > 1 else encoded[0]
    elif key in st.query_params:
        del st.query_params[key]
