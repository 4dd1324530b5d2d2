"""Input limits: the largest data record, file line and JSON nesting a run accepts.

Data files come from users (and through the dashboard's Train page): one 60 MB line once took a
training process past 15 GB before anything failed, and a line of 100,000 `[` crashed the JSON
parser with a RecursionError. The limits here are checked before any model loads, by streaming
the file (never more than one bounded line in memory), and again where the data is parsed, so
every loader and `preflight` share one rule and one message.

This module imports nothing heavy: the dashboard calls it while the form is being filled in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

MAX_RECORD_BYTES = 1 << 20  # 1 MiB: an instruction example is a few KB; 1 MiB is ~250 k tokens
MAX_LINE_BYTES = MAX_RECORD_BYTES  # a JSONL line is one record
MAX_FILE_BYTES = 4 << 30  # 4 GiB of JSONL (read line by line): ~300 times databricks-dolly-15k
MAX_JSON_FILE_BYTES = 256 << 20  # a JSON array (or YAML file) is parsed whole: ~10 times Alpaca's 22 MB
MAX_JSON_DEPTH = 64  # records are flat objects of strings; 64 leaves room for any sane extra field
PARSED_WHOLE = (".json", ".yml", ".yaml")  # formats read whole (MAX_JSON_FILE_BYTES), not line by line

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(r"[\[\]{}]")


class LimitError(ValueError):
    """Input over a limit; str() names the file (and line) and what to do."""


def _mib(n: int) -> str:
    return f"{round(n / (1 << 20), 1):g} MiB"


def check_file_size(path: str | Path) -> int:
    """The size of `path` in bytes; LimitError when over MAX_FILE_BYTES (MAX_JSON_FILE_BYTES for a
    .json array, which is parsed whole rather than line by line)."""
    path = Path(path)
    size = path.stat().st_size
    limit = MAX_JSON_FILE_BYTES if path.suffix.lower() in PARSED_WHOLE else MAX_FILE_BYTES
    if size > limit:
        hint = ": write it as JSONL (one record per line)" if limit == MAX_JSON_FILE_BYTES else ": split it"
        raise LimitError(f"{path}: {_mib(size)} is larger than the {_mib(limit)} such a data file may have{hint}")
    return size


def bounded_lines(path: str | Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line bytes without the newline) of a file, read as a stream.

    Raises LimitError on the first line longer than `max_bytes` as soon as that many bytes of it
    are read: a huge line is never held in memory whole.
    """
    with open(path, "rb") as f:
        number = 0
        while True:
            line = f.readline(max_bytes + 1)  # at most max_bytes + 1 bytes, newline included
            if not line:
                return
            number += 1
            body = line[:-1] if line.endswith(b"\n") else line
            if len(body) > max_bytes:
                raise LimitError(
                    f"{path}, line {number}: longer than {_mib(max_bytes)}, the most a data "
                    "line (one record) may have: shorten or remove that record"
                )
            yield number, body


def check_record_size(text: str | bytes, where: str) -> None:
    """LimitError when one record (its JSON text) is over MAX_RECORD_BYTES."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_RECORD_BYTES:
        raise LimitError(
            f"{where}: a record of {_mib(size)} is larger than the {_mib(MAX_RECORD_BYTES)} "
            "a record may have: shorten or remove it"
        )


def json_depth_exceeds(text: str, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON `text` nests arrays/objects deeper than `limit`.

    Counts brackets outside strings, stopping at the first level past the limit, so a line of
    100,000 `[` is answered at once instead of exhausting the parser's recursion. Valid records
    have two brackets each, so the scan is cheap.
    """
    depth = 0
    for match in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if match.group() in "[{" else -1
        if depth > limit:
            return True
    return False


def check_json_depth(text: str, where: str) -> None:
    """LimitError when `text` nests deeper than MAX_JSON_DEPTH (checked before json.loads)."""
    if json_depth_exceeds(text):
        raise LimitError(
            f"{where}: JSON nested more than {MAX_JSON_DEPTH} levels deep; a record is one "
            "flat object of strings: fix or remove that line"
        )


def yaml_depth_exceeds(text: str, loader, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the YAML `text` nests sequences/mappings deeper than `limit`.

    Read as parser events, which libyaml produces without recursion; composing a node tree
    recurses, and on a line of 100,000 `[` the C composer overflows the stack (a segfault,
    not an exception). Stops at the first level past the limit.
    """
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > limit:
                return True
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1
    return False


def check_data_file(path: str | Path) -> None:
    """Stream a data file once and raise LimitError for the first limit it breaks.

    JSONL (and YAML) files: every line within MAX_LINE_BYTES, and a JSONL line nested at most
    MAX_JSON_DEPTH deep. A JSON array may legitimately be written on one line, so a .json file
    is bounded by its size only here; its nesting and records, and a YAML file's nesting, are
    checked when it is parsed (adakd.data.instructions). A folder's .yml files are each checked.
    """
    path = Path(path).expanduser()
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".yml", ".yaml")) if path.is_dir() else [path]
    for file in files:
        check_file_size(file)
        suffix = file.suffix.lower()
        if suffix == ".json":
            continue
        for number, line in bounded_lines(file):
            if suffix == ".jsonl":
                check_json_depth(line.decode("utf-8", errors="replace"), f"{file}, line {number}")
        if suffix in (".yml", ".yaml"):
            import yaml

            try:
                deep = yaml_depth_exceeds(
                    file.read_text(encoding="utf-8", errors="replace"), getattr(yaml, "CSafeLoader", yaml.SafeLoader)
                )
            except yaml.YAMLError:
                deep = False  # invalid YAML: the loader names the line
            if deep:
                raise LimitError(
                    f"{file}: YAML nested more than {MAX_JSON_DEPTH} levels deep; fix or remove the deep part"
                )
