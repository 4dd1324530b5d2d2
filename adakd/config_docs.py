"""RunConfig's settings documented from their field metadata (`setting(...)` in adakd/config.py).

One source, three readers: `python -m adakd settings` (`settings_text`), the Train page's help
texts (`form_help`) and the settings table of docs/contracts.md (`settings_markdown`, spliced
in by scripts/settings_table.py; a test keeps the committed table equal to it).
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

from adakd.config import FIELDS, RunConfig, allowed_text, unknown_fields_message


@dataclass(frozen=True)
class SettingDoc:
    """One RunConfig field as the docs show it."""

    name: str
    type: str  # as annotated, e.g. "list[int] | None"
    default: str  # in `--set` syntax: null, true, 0.0001, [] ...
    allowed: str  # e.g. "in (0, 1]", "one of on, off, inverse"
    unit: str  # e.g. "steps"; empty when the value has none
    help: str


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def setting_docs() -> list[SettingDoc]:
    """Every field, in RunConfig's order."""
    defaults = RunConfig()
    return [
        SettingDoc(
            name=name,
            type=str(f.type),
            default=_shown(getattr(defaults, name)),
            allowed=allowed_text(name),
            unit=f.metadata["unit"],
            help=f.metadata["help"],
        )
        for name, f in FIELDS.items()
    ]


def setting_doc(name: str) -> SettingDoc:
    """The field `name`; an unknown name raises ValueError with close matches."""
    for doc in setting_docs():
        if doc.name == name:
            return doc
    raise ValueError(unknown_fields_message([name], list(FIELDS)))


def form_help(name: str) -> str:
    """A widget's help text (Markdown): what the field means and what it accepts."""
    doc = setting_doc(name)
    unit = f" ({doc.unit})" if doc.unit else ""
    allowed = f" Allowed: {doc.allowed}{unit}." if doc.allowed else ""
    return f"{doc.help}{allowed} Setting `{name}`, default {doc.default}."


def settings_text(names: list[str] | None = None) -> str:
    """The listing of `python -m adakd settings`: name, type, default, allowed values, help."""
    docs = [setting_doc(n) for n in names] if names else setting_docs()
    blocks = []
    for doc in docs:
        unit = f", {doc.unit}" if doc.unit else ""
        lines = [f"{doc.name} ({doc.type}, default {doc.default}{unit})", _indented(doc.help)]
        if doc.allowed:
            lines.append(_indented(f"allowed: {doc.allowed}"))
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _indented(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="    ", subsequent_indent="    ")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    """docs/contracts.md's settings table (GitHub Markdown), one row per field."""
    rows = [
        "| Setting | Type | Default | Allowed | Unit | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    for doc in setting_docs():
        cells = (f"`{doc.name}`", f"`{doc.type}`", f"`{doc.default}`", doc.allowed, doc.unit, doc.help)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows) + "\n"
