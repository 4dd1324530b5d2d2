"""Instruction data: the embedded chatterbot corpus and the paper's Dolly / Alpaca file formats.

Every source becomes a list of ``Example(instruction, context, response, category)`` (the
Dolly schema). ``load_examples(source)`` picks the loader:

    "chatterbot"          the English YAML files of the installed ``chatterbot-corpus`` package
    *.yml / *.yaml / dir  chatterbot-format YAML (``categories`` + ``conversations``)
    *.jsonl               one JSON object per line (databricks-dolly-15k, MiniLLM eval sets)
    *.json                one JSON array of objects (Alpaca)

Records may use the Dolly keys (``instruction``, ``context``, ``response``, ``category``) or the
Alpaca keys (``instruction``, ``input``, ``output``) in either file type; ``instruction`` and
the response are required, the rest optional. Surrounding whitespace is stripped.

Chatterbot conversations are lists of turns; every consecutive (turn, next turn) becomes one
example, and exact duplicates (same instruction, context, response) are dropped, keeping the
first. The installed English corpus (1.3.3) gives 2,306 pairs -> 1,176 unique examples from
1,015 distinct prompts in 21 categories. (``trivia.yml`` line 35 holds a conversation that
is a single string instead of a list; it has no reply and is skipped with a warning. Counting
it character by character, as a naive ``zip`` over it does, inflates the total to 1,257.)

Bad input raises ``DataError`` naming the file, line and field.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

from adakd.runs.limits import (
    MAX_JSON_DEPTH,
    bounded_lines,
    check_data_file,
    check_file_size,
    check_json_depth,
    check_record_size,
    yaml_depth_exceeds,
)

logger = logging.getLogger(__name__)

CHATTERBOT_INSTALL_HINT = "pip install --no-deps chatterbot-corpus==1.3.3"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Example:
    """One instruction-following example in the Dolly schema."""

    instruction: str
    context: str = ""
    response: str = ""
    category: str = ""


class DataError(ValueError):
    """Bad training/evaluation data; ``str()`` names the file, line and field when known."""

    def __init__(self, message: str, path=None, line: int | None = None, field: str | None = None):
        self.message, self.path, self.line, self.field = message, path, line, field
        where = [
            f"{path}" if path is not None else None,
            f"line {line}" if line else None,
            f"field '{field}'" if field else None,
        ]
        prefix = ", ".join(w for w in where if w)
        super().__init__(f"{prefix}: {message}" if prefix else message)


# --------------------------------------------------------------------------- dispatch


def load_examples(source: str) -> list[Example]:
    """Load examples from ``"chatterbot"`` or a data file/folder (see the module docstring)."""
    if source == "chatterbot":
        return load_chatterbot()
    path = Path(source)
    if not path.exists():
        raise DataError("file not found (give 'chatterbot' or a .jsonl / .json / .yml path)", path)
    if path.is_dir():
        return load_chatterbot(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return load_dolly_jsonl(path)
    if suffix == ".json":
        return load_alpaca_json(path)
    if suffix in (".yml", ".yaml"):
        return load_chatterbot(path)
    raise DataError(
        f"unsupported file type '{suffix}': use .jsonl (Dolly, one object per line), "
        ".json (Alpaca, one array) or .yml (chatterbot conversations)",
        path,
    )


# --------------------------------------------------------------------------- chatterbot YAML


def chatterbot_english_dir() -> Path:
    """The English data folder of the installed chatterbot-corpus package (not imported)."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"the default data needs the package 'chatterbot-corpus'; install it with:  {CHATTERBOT_INSTALL_HINT}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "english"
    if not folder.is_dir():
        raise DataError(
            f"chatterbot-corpus is installed but has no {folder}; reinstall it with:  {CHATTERBOT_INSTALL_HINT}"
        )
    return folder


def load_chatterbot(path=None) -> list[Example]:
    """Consecutive-turn pairs from chatterbot YAML (a file, a folder of them, or the installed
    English corpus when ``path`` is None), de-duplicated, in sorted-file then file order."""
    path = chatterbot_english_dir() if path is None else Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".yml", ".yaml")) if path.is_dir() else [path]
    if not files:
        raise DataError("no .yml files in this folder", path)
    examples: list[Example] = []
    for file in files:
        examples.extend(_chatterbot_file(file))
    return _deduplicate(examples)


def _chatterbot_file(path: Path) -> list[Example]:
    text = _read_text(path)
    try:
        if yaml_depth_exceeds(text, _YAML_LOADER):  # before compose, whose recursion can crash
            raise DataError(
                f"YAML nested more than {MAX_JSON_DEPTH} levels deep; a chatterbot file is a "
                "mapping of lists of strings: fix or remove the deep part",
                path,
            )
        root = yaml.compose(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        raise DataError(
            f"invalid YAML: {getattr(err, 'problem', None) or err}", path, mark.line + 1 if mark else None
        ) from None
    if root is None:
        raise DataError("empty file: no conversations", path)
    if not isinstance(root, yaml.MappingNode):
        raise DataError(
            "the top level must be a mapping with 'categories' and 'conversations'", path, root.start_mark.line + 1
        )
    fields = {key.value: value for key, value in root.value if isinstance(key, yaml.ScalarNode)}
    category = path.stem
    categories = fields.get("categories")
    if (
        isinstance(categories, yaml.SequenceNode)
        and categories.value
        and isinstance(categories.value[0], yaml.ScalarNode)
    ):
        category = categories.value[0].value.strip() or category
    conversations = fields.get("conversations")
    if conversations is None:
        raise DataError("missing (a list of conversations, each a list of turns)", path, None, "conversations")
    if not isinstance(conversations, yaml.SequenceNode):
        raise DataError("must be a list of conversations", path, conversations.start_mark.line + 1, "conversations")
    examples = []
    for i, conv in enumerate(conversations.value):
        line = conv.start_mark.line + 1
        if not isinstance(conv, yaml.SequenceNode):
            if isinstance(conv, yaml.ScalarNode):  # e.g. a missing "- " before the first turn
                logger.warning(
                    "%s, line %d: conversation %d is a single string, not a list of turns; skipped", path, line, i
                )
                continue
            raise DataError("a conversation must be a list of turns", path, line, f"conversations[{i}]")
        turns = []
        for j, turn in enumerate(conv.value):
            where = (path, turn.start_mark.line + 1, f"conversations[{i}][{j}]")
            if not isinstance(turn, yaml.ScalarNode):
                raise DataError("a turn must be a plain string, not a list or mapping", *where)
            # The scalar's source text, not its YAML type: an unquoted `yes` stays "yes".
            if not turn.value.strip():
                raise DataError("empty turn", *where)
            turns.append(turn.value.strip())
        if len(turns) < 2:
            logger.warning("%s, line %d: conversation %d has a single turn and no reply; skipped", path, line, i)
        for prompt, reply in itertools.pairwise(turns):  # each turn is the reply to the one before
            examples.append(Example(prompt, "", reply, category))
    return examples


def _deduplicate(examples: list[Example]) -> list[Example]:
    seen, unique = set(), []
    for ex in examples:
        key = (ex.instruction, ex.context, ex.response)
        if key not in seen:
            seen.add(key)
            unique.append(ex)
    return unique


# --------------------------------------------------------------------------- JSON / JSONL


def load_dolly_jsonl(path) -> list[Example]:
    """One JSON object per line (blank lines skipped); Dolly or Alpaca keys.

    Read line by line within the input limits (adakd.runs.limits): a huge line or a deeply nested
    one is refused with its line number before it is parsed.
    """
    path = Path(path)
    examples = []
    try:
        check_file_size(path)
        for number, raw in bounded_lines(path):
            text = _decode(raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw, path, number)
            if not text.strip():
                continue
            where = f"{path}, line {number}"
            check_json_depth(text, where)
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                raise DataError(f"invalid JSON: {err.msg} (column {err.colno})", path, number) from None
            examples.append(_example_from_record(record, path, number))
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as err:
        raise DataError(f"cannot read: {err.strerror}", path) from None
    if not examples:
        raise DataError("empty file: no examples", path)
    return examples


def load_alpaca_json(path) -> list[Example]:
    """One JSON array of objects; Alpaca (``instruction``, ``input``, ``output``) or Dolly keys."""
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError("empty file: no examples", path)
    check_json_depth(text, str(path))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (one JSON object per line? name the file .jsonl)" if err.msg == "Extra data" else ""
        raise DataError(f"invalid JSON: {err.msg} (column {err.colno}){hint}", path, err.lineno) from None
    if not isinstance(data, list):
        raise DataError("expected a JSON array [ {...}, ... ] of records; for one object per line use .jsonl", path, 1)
    if not data:
        raise DataError("empty array: no examples", path)
    lines = _array_item_lines(text)
    for record, line in zip(data, lines, strict=True):
        check_record_size(json.dumps(record), f"{path}, line {line}")
    return [_example_from_record(record, path, line) for record, line in zip(data, lines, strict=True)]


def _array_item_lines(text: str) -> list[int]:
    """1-based line of each item of a top-level JSON array (``text`` is known to be valid)."""
    decoder, lines = json.JSONDecoder(), []
    pos = _skip_ws(text, text.index("[") + 1)
    while text[pos] != "]":
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
        pos = _skip_ws(text, pos)
        if text[pos] == ",":
            pos = _skip_ws(text, pos + 1)
    return lines


def _skip_ws(text: str, pos: int) -> int:
    while text[pos] in " \t\r\n":
        pos += 1
    return pos


def _example_from_record(record, path: Path, line: int) -> Example:
    if not isinstance(record, dict):
        raise DataError(f"expected a JSON object, got {type(record).__name__}", path, line)

    def text(names: tuple[str, ...], required: bool) -> str:
        name = next((n for n in names if n in record), None)
        if name is None or (record[name] is None and not required):
            if required:
                raise DataError(
                    "missing; each record needs 'instruction' and a response ('response' or 'output')",
                    path,
                    line,
                    names[0],
                )
            return ""
        value = record[name]
        if not isinstance(value, str):
            raise DataError(
                f"must be a string, got {type(value).__name__} ({json.dumps(value)[:40]})", path, line, name
            )
        if required and not value.strip():
            raise DataError("is empty", path, line, name)
        return value.strip()

    return Example(
        instruction=text(("instruction",), True),
        context=text(("context", "input"), False),
        response=text(("response", "output"), True),
        category=text(("category",), False),
    )


def _read_text(path: Path) -> str:
    """The whole file as text, after the input limits (size; line length except for a .json array)."""
    try:
        check_data_file(path)
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    except OSError as err:
        raise DataError(f"cannot read: {err.strerror}", path) from None
    return _decode(data[3:] if data.startswith(b"\xef\xbb\xbf") else data, path, 1)


def _decode(data: bytes, path: Path, first_line: int) -> str:
    """UTF-8 text of `data` (which starts at line `first_line` of `path`), or a DataError naming the line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + data[: err.start].count(b"\n")
        raise DataError(
            f"not UTF-8 text (byte {data[err.start]:#04x} at offset {err.start}); save the file as UTF-8", path, line
        ) from None


# --------------------------------------------------------------------------- split


def split_examples(examples: list[Example], seed: int = 0, fractions=(0.8, 0.1, 0.1)):
    """Deterministic (train, validation, test) split by ``seed``.

    Examples sharing a prompt (instruction + context, case and spacing ignored) stay in one
    split, so a held-out prompt is never seen in training with another reply. Prompt groups are
    shuffled with ``random.Random(seed)`` and filled into train until it holds
    ``fractions[0]·n`` examples, then validation, then test; split sizes are therefore exact up
    to one group. Each split keeps the input order.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    groups = _prompt_groups(examples)
    order = list(groups)
    random.Random(seed).shuffle(order)
    n = len(examples)
    bounds = (fractions[0] * n, (fractions[0] + fractions[1]) * n)
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    filled = 0
    for key in order:
        part = 0 if filled < bounds[0] else 1 if filled < bounds[1] else 2
        parts[part].extend(groups[key])
        filled += len(groups[key])
    return tuple([examples[i] for i in sorted(p)] for p in parts)


def _prompt_groups(examples: list[Example]) -> dict[tuple[str, str], list[int]]:
    """Indices of the examples sharing a prompt (instruction + context, case and spacing ignored)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, ex in enumerate(examples):
        key = (" ".join(ex.instruction.split()).casefold(), " ".join(ex.context.split()).casefold())
        groups.setdefault(key, []).append(index)
    return groups


def long_reference_split(
    examples: list[Example], held_out: int, seed: int = 0, min_words: int = 11, validation_fraction: float = 0.1
):
    """(train, validation, test) with ``held_out`` prompts that have a long reference as the test set.

    The evaluation protocol scores only references of >= ``min_words`` words (adakd/evaluation/protocol.py),
    and chatterbot has few of them (286 prompts of 1,015), so an 80/10/10 split leaves ~27 to
    score. Here the prompt groups (as in :func:`split_examples`: all replies of a prompt stay
    together) with at least one long reply are shuffled with ``random.Random(seed)`` and the first
    ``held_out`` become the test set; every other group is split into train and validation by
    :func:`split_examples` (``validation_fraction`` of the examples, same seed).
    """
    from adakd.evaluation.protocol import words

    if held_out < 1:
        raise ValueError(f"held_out must be >= 1, got {held_out}")
    groups = _prompt_groups(examples)
    long = [k for k, idx in groups.items() if any(len(words(examples[i].response)) >= min_words for i in idx)]
    if len(long) < held_out:
        raise ValueError(
            f"only {len(long)} prompts have a reference of >= {min_words} words; "
            f"lower eval_holdout (now {held_out}) or eval_min_reference_words"
        )
    random.Random(seed).shuffle(long)
    test_idx = sorted(i for k in long[:held_out] for i in groups[k])
    taken = set(test_idx)
    rest = [ex for i, ex in enumerate(examples) if i not in taken]
    train, val, extra = split_examples(rest, seed=seed, fractions=(1 - validation_fraction, validation_fraction, 0.0))
    return train, val + extra, [examples[i] for i in test_idx]
