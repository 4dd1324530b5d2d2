"""Data loaders (chatterbot YAML, Dolly JSONL, Alpaca JSON), the split, and every bad input."""

from __future__ import annotations

import json
import logging

import pytest

from adakd.data.instructions import (
    DataError,
    Example,
    load_alpaca_json,
    load_chatterbot,
    load_dolly_jsonl,
    load_examples,
    split_examples,
)

# --------------------------------------------------------------------------- the real corpus


@pytest.fixture(scope="module")
def corpus():
    return load_examples("chatterbot")


def test_real_chatterbot_corpus(corpus):
    # 2,306 consecutive pairs in the 21 English files, 1,176 distinct (counted separately with a
    # plain yaml scan when writing this test).
    assert len(corpus) == 1176
    assert len({(e.instruction, e.context, e.response) for e in corpus}) == len(corpus)
    assert len({e.category for e in corpus}) == 21
    assert all(e.instruction and e.response and e.context == "" for e in corpus)
    assert (
        Example(
            "What is AI?",
            "",
            "Artificial Intelligence is the branch of engineering and science "
            "devoted to constructing machines that think.",
            "AI",
        )
        in corpus
    )
    # a conversation of several turns gives each consecutive pair (conversations.yml, first one)
    assert Example("Good morning, how are you?", "", "I am doing well, how about you?", "conversations") in corpus
    assert Example("I am doing well, how about you?", "", "I'm also good.", "conversations") in corpus
    # the malformed trivia entry (a string, not a list) is skipped, not split into characters
    assert not any(len(e.instruction) == 1 for e in corpus)
    assert Example("In what year were the first Air Jordan sneakers released?", "", "1984", "trivia") in corpus


def test_split_is_deterministic_disjoint_and_grouped(corpus):
    train, val, test = split_examples(corpus, seed=0)
    assert (train, val, test) == split_examples(corpus, seed=0)
    assert split_examples(corpus, seed=1)[0] != train
    assert sorted(map(repr, train + val + test)) == sorted(map(repr, corpus))
    prompts = [{" ".join(e.instruction.split()).casefold() for e in part} for part in (train, val, test)]
    assert not (prompts[0] & prompts[1] or prompts[0] & prompts[2] or prompts[1] & prompts[2])
    largest_group = max(sum(1 for e in corpus if e.instruction == x.instruction) for x in corpus)
    n = len(corpus)
    assert abs(len(train) - 0.8 * n) <= largest_group and abs(len(val) - 0.1 * n) <= largest_group + 1
    index = {id(e): i for i, e in enumerate(corpus)}
    assert [index[id(e)] for e in train] == sorted(index[id(e)] for e in train)  # input order kept


def test_split_fractions_and_bad_fractions():
    examples = [Example(f"q{i}", "", f"a{i}") for i in range(10)]
    train, val, test = split_examples(examples, seed=3, fractions=(0.5, 0.5, 0.0))
    assert (len(train), len(val), len(test)) == (5, 5, 0)
    for bad in [(0.5, 0.5), (0.9, 0.2, -0.1), (0.5, 0.3, 0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            split_examples(examples, fractions=bad)


# --------------------------------------------------------------------------- small files


def test_dolly_jsonl(tmp_path):
    f = tmp_path / "dolly.jsonl"
    f.write_text(
        json.dumps({"instruction": " Name a fruit. ", "context": "", "response": "Apple.", "category": "open_qa"})
        + "\n\n"
        + json.dumps({"instruction": "Summarise.", "context": "Cats purr.", "response": "They purr."})
        + "\n",
        encoding="utf-8",
    )
    assert load_examples(str(f)) == [
        Example("Name a fruit.", "", "Apple.", "open_qa"),
        Example("Summarise.", "Cats purr.", "They purr.", ""),
    ]


def test_jsonl_with_alpaca_keys(tmp_path):
    f = tmp_path / "eval.jsonl"
    f.write_text('{"instruction": "Add", "input": "2 and 3", "output": "5"}\n', encoding="utf-8")
    assert load_dolly_jsonl(f) == [Example("Add", "2 and 3", "5", "")]


def test_alpaca_json(tmp_path):
    f = tmp_path / "alpaca.json"
    records = [
        {"instruction": "Say hi", "input": "", "output": "Hi!"},
        {"instruction": "Translate", "input": "chat", "output": "cat", "category": "tr"},
    ]
    f.write_text(json.dumps(records, indent=2), encoding="utf-8")
    assert load_examples(str(f)) == [Example("Say hi", "", "Hi!", ""), Example("Translate", "chat", "cat", "tr")]


def test_chatterbot_yaml_file_and_folder(tmp_path):
    f = tmp_path / "mine.yml"
    f.write_text(
        "categories:\n- small talk\nconversations:\n"
        "- - Hello\n  - Hi there\n  - How are you?\n"
        "- - Hello\n  - Hi there\n"  # duplicate pair, dropped
        "- - Is it true?\n  - yes\n"  # unquoted yes stays the text "yes"
        "- - Year?\n  - '1984'\n",
        encoding="utf-8",
    )
    expected = [
        Example("Hello", "", "Hi there", "small talk"),
        Example("Hi there", "", "How are you?", "small talk"),
        Example("Is it true?", "", "yes", "small talk"),
        Example("Year?", "", "1984", "small talk"),
    ]
    assert load_examples(str(f)) == expected
    assert load_chatterbot(tmp_path) == expected  # a folder of .yml files


def test_single_string_conversation_is_skipped_with_a_warning(tmp_path, caplog):
    f = tmp_path / "t.yml"
    f.write_text("conversations:\n- - Q1\n  - A1\n- Just one string\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="adakd.data.instructions"):
        assert load_examples(str(f)) == [Example("Q1", "", "A1", "t")]
    assert "line 4" in caplog.text


# --------------------------------------------------------------------------- bad input


def _error(tmp_path, name, content) -> str:
    f = tmp_path / name
    f.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(DataError) as err:
        load_examples(str(f))
    assert name in str(err.value)
    return str(err.value)


def test_missing_field(tmp_path):
    msg = _error(tmp_path, "d.jsonl", '{"instruction": "a", "response": "b"}\n{"instruction": "c", "context": ""}\n')
    assert "line 2" in msg and "field 'response'" in msg and "missing" in msg
    msg = _error(tmp_path, "a.json", '[\n  {"instruction": "a", "output": "b"},\n  {"output": "c"}\n]')
    assert "line 3" in msg and "field 'instruction'" in msg


@pytest.mark.parametrize(
    "name, content",
    [("e.jsonl", ""), ("e.jsonl", "\n \n"), ("e.json", ""), ("e.json", "[]"), ("e.yml", ""), ("e.yml", "# nothing\n")],
)
def test_empty_file(tmp_path, name, content):
    assert "empty" in _error(tmp_path, name, content)


def test_invalid_json(tmp_path):
    msg = _error(tmp_path, "d.jsonl", '{"instruction": "a", "response": "b"}\n\n{"instruction": "c", response}\n')
    assert "line 3" in msg and "invalid JSON" in msg
    msg = _error(tmp_path, "a.json", '[\n {"instruction": "a", "output": "b"},\n {"instruction": }\n]')
    assert "line 3" in msg and "invalid JSON" in msg


def test_jsonl_named_json_gets_a_hint(tmp_path):
    msg = _error(tmp_path, "a.json", '{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": "d"}\n')
    assert "line 2" in msg and ".jsonl" in msg


def test_json_object_instead_of_array(tmp_path):
    assert "array" in _error(tmp_path, "a.json", '{"instruction": "a", "output": "b"}')


def test_invalid_yaml(tmp_path):
    msg = _error(tmp_path, "c.yml", "conversations:\n- - Hello\n  - Hi\n - - broken: [\n")
    assert "invalid YAML" in msg and "line 4" in msg


def test_non_utf8(tmp_path):
    msg = _error(
        tmp_path, "d.jsonl", b'{"instruction": "a", "response": "b"}\n{"instruction": "caf\xe9", "response": "x"}\n'
    )
    assert "line 2" in msg and "UTF-8" in msg


def test_non_string_field(tmp_path):
    msg = _error(tmp_path, "d.jsonl", '{"instruction": "a", "response": 5}\n')
    assert "line 1" in msg and "field 'response'" in msg and "int" in msg
    msg = _error(tmp_path, "d2.jsonl", '{"instruction": "a", "response": "b", "context": ["x"]}\n')
    assert "field 'context'" in msg and "list" in msg


def test_empty_string_field(tmp_path):
    assert "field 'instruction'" in _error(tmp_path, "d.jsonl", '{"instruction": "  ", "response": "b"}\n')


def test_record_that_is_not_an_object(tmp_path):
    assert "line 1" in _error(tmp_path, "d.jsonl", '["a", "b"]\n')


def test_yaml_structure_errors(tmp_path):
    msg = _error(tmp_path, "c.yml", "conversations:\n- - Hello\n  - {a: 1}\n")
    assert "line 3" in msg and "conversations[0][1]" in msg
    assert "field 'conversations'" in _error(tmp_path, "c2.yml", "categories:\n- x\n")
    assert "empty turn" in _error(tmp_path, "c3.yml", "conversations:\n- - Hello\n  - ''\n")


def test_unknown_source(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_examples(str(tmp_path / "missing.jsonl"))
    assert "unsupported" in _error(tmp_path, "d.csv", "instruction,response\na,b\n")


def test_load_alpaca_json_directly_reports_lines(tmp_path):
    f = tmp_path / "a.json"
    f.write_text('[{"instruction": "a", "output": "b"},\n\n {"instruction": "c", "output": 3}]', encoding="utf-8")
    with pytest.raises(DataError, match="line 3, field 'output'"):
        load_alpaca_json(f)
