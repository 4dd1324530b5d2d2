"""The Runs page's search and filters over the run table (analysis.runs.list_runs), as a pure
function of the table and the choices, so the page stays short and the rules are tested."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

# the run-table columns a filter chooses values of, with the label the page shows
FILTER_COLUMNS = {"sweep": "Sweep", "method": "Method", "state": "State", "preset": "Preset"}
# where the search text is looked for
SEARCH_COLUMNS = ("name", "method", "preset", "sweep", "tags", "notes")
NO_SWEEP = "(no sweep)"  # the sweep filter's name for runs directly under a root


@dataclass(frozen=True)
class RunFilter:
    """search: words that must all occur (case-insensitive) in a run's name, method, preset,
    sweep, tags or notes; values: per FILTER_COLUMNS column, the allowed values (none chosen = all);
    tags: runs carrying every one of these tags."""

    search: str = ""
    values: dict[str, list[str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def filter_options(table: pd.DataFrame) -> dict[str, list[str]]:
    """The values each filter offers (sorted; runs directly under a root as NO_SWEEP), and
    "tags": every tag in use, once whatever its case."""
    options = {column: sorted({_value(column, v) for v in table[column]}) for column in FILTER_COLUMNS}
    tags: dict[str, str] = {}  # one spelling per tag (the first met): tags compare case-insensitively
    for text in table["tags"].fillna(""):
        for tag in _tags(text):
            tags.setdefault(tag.casefold(), tag)
    options["tags"] = sorted(tags.values(), key=str.casefold)
    return options


def apply_filter(table: pd.DataFrame, chosen: RunFilter) -> pd.DataFrame:
    """The rows of `table` that pass every part of `chosen`, in their order."""
    keep = pd.Series(True, index=table.index)
    for column, allowed in chosen.values.items():
        if allowed:
            keep &= table[column].map(lambda v, c=column: _value(c, v)).isin(allowed)
    if chosen.tags:
        wanted = {t.casefold() for t in chosen.tags}
        keep &= table["tags"].fillna("").map(lambda text: wanted <= {t.casefold() for t in _tags(text)})
    words = chosen.search.casefold().split()
    if words:
        haystack = table[list(SEARCH_COLUMNS)].fillna("").astype(str).agg(" ".join, axis=1).str.casefold()
        for word in words:
            keep &= haystack.str.contains(word, regex=False)
    return table[keep]


def _value(column: str, value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value == "":
        return NO_SWEEP if column == "sweep" else "–"
    return str(value)


def _tags(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]
