"""RunConfig's field metadata as the one source of the settings' documentation and checks:
docs/contracts.md's table, `python -m adakd settings`, the Train page's help, the range and
choice checks and the `--set` parser (unit tests; the Train page through AppTest, no browser)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from adakd.cli import main
from adakd.config import FIELDS, TYPES, Range, RunConfig, allowed_text, apply_overrides, parse_overrides
from adakd.config_docs import form_help, setting_doc, setting_docs, settings_markdown
from tests.script_loader import load_script

REPO = Path(__file__).resolve().parents[2]
RANGED = [name for name, f in FIELDS.items() if f.metadata["range"] is not None]
CHOICES = [name for name, f in FIELDS.items() if f.metadata["choices"]]


def test_committed_settings_table_is_the_generated_one():
    page = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    script = load_script("settings_table.py")
    assert script.with_current_table(page) == page, "run .venv/bin/python scripts/settings_table.py"


def test_settings_table_has_one_row_per_field_in_order():
    rows = [line for line in settings_markdown().splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == RunConfig.field_names()


def test_settings_table_script_check_mode(tmp_path, capsys):
    script = load_script("settings_table.py")
    page = tmp_path / "page.md"
    page.write_text(f"intro\n{script.BEGIN}\n| old | table |\n{script.END}\noutro\n")
    assert script.main(["--check", "--page", str(page)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert script.main(["--page", str(page)]) == 0
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "| old | table |" not in text
    assert script.main(["--check", "--page", str(page)]) == 0
    page.write_text("no markers here\n")
    assert script.main(["--check", "--page", str(page)]) == 2


def test_every_field_is_documented_and_checked():
    for doc in setting_docs():
        assert doc.help.strip().endswith("."), doc.name
        kinds = [bool(FIELDS[doc.name].metadata[k]) for k in ("choices", "allowed")]
        kinds.append(FIELDS[doc.name].metadata["range"] is not None)
        # a bool needs no allowed values; every other field has exactly one source of them
        assert sum(kinds) == (0 if TYPES[doc.name] is bool else 1), doc.name


def test_default_is_shown_in_set_syntax_and_parses_back_to_the_default():
    defaults = RunConfig()
    for doc in setting_docs():
        assert parse_overrides([f"{doc.name}={doc.default}"])[doc.name] == getattr(defaults, doc.name), doc.name


@pytest.mark.parametrize("name", RANGED)
def test_range_from_metadata_is_what_the_config_enforces(name):
    limits: Range = FIELDS[name].metadata["range"]
    kind = float if TYPES[name] is float else int
    step = 1 if kind is int else 1e-6
    inside = [limits.low + step if limits.low_open else limits.low]
    outside = [limits.low if limits.low_open else limits.low - step]
    if limits.high is not None:
        outside.append(limits.high if limits.high_open else limits.high + step)
        if name != "max_prompt_length":  # at its top no max_length is left that exceeds it
            inside.append(limits.high - step if limits.high_open else limits.high)
    for value in inside:
        assert getattr(RunConfig(**{name: kind(value)}), name) == kind(value)
    for value in outside:
        with pytest.raises(ValueError) as err:
            RunConfig(**{name: kind(value)})
        assert str(err.value) == f"{name} = {kind(value)!r} is out of range: must be {allowed_text(name)}"


@pytest.mark.parametrize("name", CHOICES)
def test_choices_from_metadata_are_what_the_config_enforces(name):
    for choice in FIELDS[name].metadata["choices"]:
        assert getattr(RunConfig(**{name: choice}), name) == choice
    with pytest.raises(ValueError, match=f"^{name} = 'nope' is not valid: must be one of "):
        RunConfig(**{name: "nope"})


@pytest.mark.parametrize(
    "item,expected",
    [
        ("student_layers=0,6,12", [0, 6, 12]),
        ("student_layers=0, 6 ,12", [0, 6, 12]),
        ("student_layers=[0, 6, 12]", [0, 6, 12]),
        ("student_layers=None", None),
        ("student_layers=NULL", None),
        ("student_layers=", None),
        ("eval_data=a.jsonl", ["a.jsonl"]),
        ('eval_data=["a,b.jsonl"]', ["a,b.jsonl"]),  # a comma inside a name needs the JSON form
        ("eval_data=", []),
        ("divergence_params=", {}),
        ('divergence_params={"alpha": 0.2, "beta": 0.7}', {"alpha": 0.2, "beta": 0.7}),
        ("ctkd=TRUE", True),
        ("ctkd=off", False),
        ("lr=1", 1.0),
        ("lr=2.5e-5", 2.5e-5),
        ("seed=+7", 7),
        ("data= spaced.jsonl ", "spaced.jsonl"),
    ],
)
def test_set_syntax(item, expected):
    key = item.partition("=")[0]
    value = parse_overrides([item])[key]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("name", [name for name in FIELDS if TYPES[name] is not str])  # any text is a str
def test_a_value_of_the_wrong_type_is_one_line_naming_the_field(name):
    with pytest.raises(ValueError) as err:
        parse_overrides([f"{name}=[[oops"])
    message = str(err.value)
    assert message.startswith(f"{name}='[[oops': cannot parse as ") and "\n" not in message


def test_apply_overrides_checks_ranges_with_the_metadata_text():
    with pytest.raises(ValueError, match=r"^eval_seeds = 0 is out of range: must be in \[1, 100\]$"):
        apply_overrides(RunConfig(), ["eval_seeds=0"])


def test_settings_command_lists_from_the_metadata(capsys):
    assert main(["settings"]) == 0
    heads = [line.split(" (")[0] for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert heads == RunConfig.field_names()
    assert main(["settings", "idts_c", "max_steps"]) == 0
    out = capsys.readouterr().out
    assert setting_doc("idts_c").help in out and f"allowed: {allowed_text('max_steps')}" in out
    assert "max_steps (int, default 100, optimiser steps)" in out and "lr (" not in out


def test_settings_command_unknown_name_is_one_line_with_a_suggestion(capsys):
    assert main(["settings", "idts_cc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'idts_cc' (did you mean idts_c" in err


def test_settings_markdown_is_the_table(capsys):
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == settings_markdown()


def test_train_help_points_to_the_settings_listing(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "python -m adakd settings" in out and "student_layers=0,6,12" in out


def test_form_help_says_meaning_allowed_values_and_default():
    text = form_help("max_steps")
    assert setting_doc("max_steps").help in text and allowed_text("max_steps") in text and "default 100" in text


def test_train_page_help_and_bounds_come_from_the_metadata(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path))
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=60)
    at.run()
    at.switch_page("views/train.py").run()
    assert not at.exception, [e.value for e in at.exception]
    widgets = {
        "max_steps": at.number_input(key="train-demo-steps"),
        "batch_size": at.number_input(key="train-demo-bs"),
        "seed": at.number_input(key="train-demo-seed"),
        "lr": at.number_input(key="train-demo-lr"),
        "divergence": at.selectbox(key="train-demo-div"),
        "latf": at.selectbox(key="train-demo-latf"),
        "device": at.selectbox(key="train-demo-device"),
        "idts_c": at.slider(key="train-demo-c"),
    }
    for name, widget in widgets.items():
        assert widget.help == form_help(name), name
    for name in ("max_steps", "batch_size", "seed"):
        limits = FIELDS[name].metadata["range"]
        assert (widgets[name].min, widgets[name].max) == (limits.low, limits.high), name
    assert list(widgets["divergence"].options) == list(FIELDS["divergence"].metadata["choices"])


def test_field_metadata_keys_are_the_same_for_every_field():
    keys = {tuple(sorted(f.metadata)) for f in dataclasses.fields(RunConfig)}
    assert keys == {("allowed", "choices", "help", "range", "unit")}
