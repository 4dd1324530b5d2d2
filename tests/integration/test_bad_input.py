"""Bad input, end to end: each gets exit code 2 (CLI) or an error box (dashboard) with a message
that says what to fix, no traceback, and nothing written (no run folder, no queued job).

Covered: invalid config values (CLI --set and the Train form), an unknown model name or path,
two models with different vocabularies, a non-causal model (a tiny BERT), empty / malformed /
non-UTF-8 dataset files, an unknown run name (resume, eval), run names with path separators or
`..`, a prompt longer than the context and over-long or non-Unicode text in the token explorer
(the dashboard has no file upload; the explorer's text boxes are its only free-form input).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adakd.cli import main

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tokenizer):
    """Local model folders and data files (tiny, built here; nothing is downloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    from adakd.models.loading import tiny_random_llama

    base = tmp_path_factory.mktemp("inputs")
    vocab = len(tokenizer)
    ids = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    out = {"teacher": base / "teacher", "other-vocab": base / "other-vocab", "bert": base / "bert"}
    tiny_random_llama(vocab, hidden=32, seed=1, **ids).save_pretrained(out["teacher"])
    tokenizer.save_pretrained(out["teacher"])
    # a student with its own 12-word tokenizer and vocabulary
    words = ["<unk>", "<eos>", "a", "b", "c", "hello", "world", "the", "cat", "dog", "sat", "mat"]
    raw = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>").save_pretrained(
        out["other-vocab"]
    )
    tiny_random_llama(len(words), hidden=32, seed=2).save_pretrained(out["other-vocab"])
    # an encoder (bidirectional attention) with the teacher's tokenizer: only causality is wrong
    torch.manual_seed(0)
    BertForMaskedLM(
        BertConfig(vocab_size=vocab, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(out["bert"])
    tokenizer.save_pretrained(out["bert"])
    data = {
        "empty.jsonl": b"",
        "malformed.jsonl": b'{"instruction": "Hi", "response": "Hello"}\n{oops\n',
        "not-utf8.jsonl": '{"instruction": "Caf\u00e9", "response": "ok"}\n'.encode("latin-1"),
        "no-response.jsonl": b'{"instruction": "Hi"}\n',
        "list.json": b'{"instruction": "Hi"}',
    }
    out["empty-folder"] = base / "empty-folder"  # a folder is a chatterbot YAML source: none here
    out["empty-folder"].mkdir()
    for name, content in data.items():
        (base / name).write_bytes(content)
        out[name] = base / name
    return out


def nothing_written(root: Path) -> None:
    """No run folder and no job under the runs root (the dashboard's empty queue folder aside)."""
    leftovers = sorted(p.name for p in root.iterdir()) if root.exists() else []
    if ".queue" in leftovers:
        assert [p.name for p in (root / ".queue").iterdir()] in ([], ["queue.lock"])
        leftovers.remove(".queue")
    assert leftovers == [], f"bad input wrote {leftovers}"


SMOKE = ["train", "--preset", "smoke", "--quiet"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--set", "lr=-1"], "lr = -1.0 is out of range"),
        (["--set", "lr_shedule=cosine"], "unknown config field(s) 'lr_shedule' (did you mean lr_schedule"),
        (["--set", "max_steps=ten"], "max_steps='ten': cannot parse as an integer"),
        (["--set", "divergence=kl"], "divergence"),
        (["--set", "teacher=/no/such/model", "student=random"], "teacher path '/no/such/model' does not exist"),
        (
            ["--set", "teacher=no-such-org/no-such-model", "student=random"],
            "cannot load teacher 'no-such-org/no-such-model'",
        ),
        (["--set", "teacher={teacher}", "student={other-vocab}"], "different tokenizers"),
        (["--set", "teacher={teacher}", "student={bert}"], "is not a causal language model"),
        (["--set", "teacher={bert}", "student=random"], "is not a causal language model"),
        (["--set", "data={empty.jsonl}"], "empty file"),
        (["--set", "data={malformed.jsonl}"], "line 2: invalid JSON"),
        (["--set", "data={not-utf8.jsonl}"], "not UTF-8"),
        (["--set", "data={no-response.jsonl}"], "response"),
        (["--set", "data={list.json}"], "array"),
        (["--set", "data=/no/such/data.jsonl"], "data file '/no/such/data.jsonl' not found"),
        (["--set", "data={empty-folder}"], "no .yml files in this folder"),
        (["--name", "a/b"], "contains a path separator"),
        (["--name", ".."], "'..'"),
        (["--name", "../../etc"], "path separator"),
        (["--name", "caf\u00e9"], "characters other than"),
        (["--name", " "], "run name is empty"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_cli_train_refuses_bad_input(tmp_path, monkeypatch, capsys, folders, args, message):
    err = refused_train(tmp_path, monkeypatch, capsys, args, folders)
    assert message in err, err[-2000:]


def refused_train(tmp_path, monkeypatch, capsys, args: list[str], paths: dict) -> str:
    """Run `train --preset smoke ARGS` ({name} in ARGS replaced by paths[name]) in an empty cwd
    and runs root; check it exits 2 with one error line and writes nothing; return stderr."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    for name, path in paths.items():
        args = [a.replace("{" + name + "}", str(path)) for a in args]
    if "--name" not in args:
        args += ["--name", "victim"]
    assert main([*SMOKE, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err[-2000:]
    nothing_written(root)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nor anywhere else under the cwd
    return err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["resume", "no-such-run"], "no run folder 'no-such-run'"),
        (["eval", "no-such-run"], "no run folder 'no-such-run'"),
        (["resume", "a/../../b"], "contains a path separator"),
        (["resume", "{not-a-run}"], "not a run directory"),
    ],
)
def test_cli_unknown_run_is_refused(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "runs"))
    not_a_run = tmp_path / "some-folder"
    not_a_run.mkdir()
    (not_a_run / "notes.txt").write_text("not a run")
    argv = [a.replace("{not-a-run}", str(not_a_run)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["some-folder"]
    assert sorted(p.name for p in not_a_run.iterdir()) == ["notes.txt"]


def test_real_process_bad_model_exit_2_no_traceback_nothing_written(tmp_path, folders):
    run_dir = tmp_path / "victim"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "adakd",
            *SMOKE,
            "--set",
            f"teacher={folders['teacher']}",
            f"student={folders['bert']}",
            "--run-dir",
            str(run_dir),
        ],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "is not a causal language model" in proc.stderr and "Traceback" not in proc.stderr
    assert not run_dir.exists()


# ---------------------------------------------------------------- the dashboard
def _open_page(tmp_path, monkeypatch, page: str, timeout: float = 60):
    """The dashboard on `page`, with an empty runs folder and no sample runs."""
    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs

    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=timeout)
    at.run()
    at.switch_page(page).run()
    return at


def _train_page(tmp_path, monkeypatch):
    at = _open_page(tmp_path, monkeypatch, "views/train.py")
    at.selectbox(key="train-preset").set_value("smoke").run()
    return at


FORM_CASES = [
    ("extra", "lr=-1", "lr = -1.0 is out of range"),
    ("extra", "lr_shedule=cosine", "unknown config field(s) 'lr_shedule'"),
    ("extra", "max_steps=ten", "cannot parse as an integer"),
    ("extra", "probe_interval", "not of the form key=value"),
    ("extra", "teacher=/no/such/model\nstudent=random", "teacher path '/no/such/model' does not exist"),
    ("extra", "data=/no/such/data.jsonl", "data file '/no/such/data.jsonl' not found"),
    ("extra", "device=cuda", "device = 'cuda' requested but no CUDA GPU"),
    ("extra", 'divergence_params={"lam": 0.5}', "divergence_params: divergence 'rkl' has no parameter"),
    ("name", "a/b", "contains a path separator"),
    ("name", "..", "'..'"),
    ("name", "../outside", "path separator"),
    ("name", "", "run name is empty"),
]


def test_train_form_refuses_bad_input_and_starts_nothing(tmp_path, monkeypatch):
    if __import__("torch").cuda.is_available():
        pytest.skip("the device=cuda case needs a machine without a GPU")
    at = _train_page(tmp_path, monkeypatch)
    assert [b for b in at.button if b.key == "train-launch"]  # the valid smoke form can start
    for field, value, message in FORM_CASES:
        if field == "extra":
            at.text_input(key="train-name-single-smoke").input("fine-name").run()
            at.text_area(key="train-smoke-extra").input(value).run()
        else:
            at.text_area(key="train-smoke-extra").input("").run()
            at.text_input(key="train-name-single-smoke").input(value).run()
        errors = " ".join(e.value for e in at.error)
        assert message in errors, (value, errors)
        assert not [b for b in at.button if b.key == "train-launch"], value  # no Start button
        assert not at.exception
    nothing_written(tmp_path / "runs")


def test_explorer_refuses_a_prompt_longer_than_the_context(tmp_path, monkeypatch):
    at = _open_page(tmp_path, monkeypatch, "views/explorer.py", timeout=180)
    at.radio(key="explorer-source").set_value("tiny").run()
    prompt = at.text_area(key="explorer-prompt")
    assert 0 < prompt.proto.max_chars <= 50_000  # typed text is bounded before it is tokenized
    assert at.text_area(key="explorer-reference").proto.max_chars == prompt.proto.max_chars
    prompt.input("word " * 3000)  # ~3,000 tokens: over the 1,024-token bound
    at.button(key="FormSubmitter:explorer-form-Analyse").click().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Could not analyse the prompt" in errors and "tokens after formatting" in errors
    assert "Shorten the prompt" in errors
    nothing_written(tmp_path / "runs")


def test_explorer_names_non_unicode_text(tiny_pair):
    from analysis.explorer import explore_prompt

    for prompt, reference in (("caf\udce9", None), ("Name a colour.", "bl\udcffue")):
        with pytest.raises(ValueError, match="not valid Unicode text"):
            explore_prompt(tiny_pair.teacher, tiny_pair.student, tiny_pair.tokenizer, prompt, reference)


def test_explorer_prompt_past_a_short_model_context(tiny_pair):
    """A model with a 64-token context: the bound is the context, and the message says so."""
    from analysis.explorer import explore_prompt

    tiny_pair.teacher.config.max_position_embeddings = 64
    with pytest.raises(ValueError, match=r"model context 64\)"):
        explore_prompt(tiny_pair.teacher, tiny_pair.student, tiny_pair.tokenizer, "word " * 80)
