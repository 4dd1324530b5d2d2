"""Property-based tests (hypothesis) of the loss functions and the run-directory readers.

Losses: every divergence is finite and non-negative (up to float rounding) on random logits of
any magnitude, exactly or nearly zero on identical inputs; `adakd_loss` is finite, selects
k = max(1, floor(r·N)) tokens (computed here with integer arithmetic: r = p/100), the hardest
ones, and puts τ only on them. Readers: random bytes or a truncated JSONL file never raise; a
JSONL file cut at any byte keeps exactly the lines written before the cut and reports nothing;
damaged lines are reported with their line number.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from adakd import DIVERGENCES, adakd_loss, divergence
from adakd.runs.rundir import RunDir, read_jsonl_report
from analysis.runs import clear_cache, load_run

PROPS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
NAMES = sorted(DIVERGENCES)


def logits(seed: int, shape: tuple[int, ...], scale: float, dtype=torch.float32) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


scales = st.sampled_from([1e-4, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4])


# ---------------------------------------------------------------- divergences
@PROPS
@given(
    name=st.sampled_from(NAMES),
    rows=st.integers(1, 5),
    vocab=st.integers(2, 50),
    scale=scales,
    seed=st.integers(0, 2**31 - 1),
    tau=st.floats(0.1, 5.0),
)
def test_divergence_finite_and_non_negative(name, rows, vocab, scale, seed, tau):
    s, t = logits(seed, (rows, vocab), scale), logits(seed + 1, (rows, vocab), scale)
    s.requires_grad_(True)
    d = divergence(name, s, t, temperature=tau)
    assert d.shape == (rows,) and d.dtype == torch.float32
    assert torch.isfinite(d).all(), (name, d)
    # float32 rounding: KL-type sums of p·log(p/q) cancel to about 1e-6 of their terms
    assert (d >= -1e-5).all(), (name, d)
    d.sum().backward()
    assert torch.isfinite(s.grad).all()


@PROPS
@given(
    name=st.sampled_from(NAMES),
    rows=st.integers(1, 5),
    vocab=st.integers(2, 50),
    scale=scales,
    seed=st.integers(0, 2**31 - 1),
)
def test_divergence_of_identical_inputs_is_zero(name, rows, vocab, scale, seed):
    z64 = logits(seed, (rows, vocab), scale, torch.float64)
    assert divergence(name, z64, z64.clone()).abs().max().item() <= 1e-12
    z32 = z64.float()
    assert divergence(name, z32, z32.clone()).abs().max().item() <= 1e-5


@PROPS
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**31 - 1), masked=st.integers(1, 5))
def test_divergence_with_masked_vocabulary_stays_finite(name, seed, masked):
    """−inf logits on the same entries of both sides (a masked vocabulary) give finite values."""
    s, t = logits(seed, (3, 8), 5.0), logits(seed + 1, (3, 8), 5.0)
    s[:, :masked] = t[:, :masked] = -math.inf
    d = divergence(name, s, t)
    assert torch.isfinite(d).all() and (d >= -1e-5).all(), (name, d)


# ---------------------------------------------------------------- adakd_loss
@PROPS
@given(
    batch=st.integers(1, 3),
    length=st.integers(1, 8),
    vocab=st.integers(2, 40),
    scale=scales,
    percent=st.integers(1, 100),
    name=st.sampled_from(NAMES),
    idts=st.booleans(),
    c=st.floats(0.0, 2.0),
    seed=st.integers(0, 2**31 - 1),
    keep=st.floats(0.0, 1.0),
)
def test_adakd_loss_finite_with_the_documented_selection(
    batch, length, vocab, scale, percent, name, idts, c, seed, keep
):
    s = logits(seed, (batch, length, vocab), scale).requires_grad_(True)
    t = logits(seed + 1, (batch, length, vocab), scale)
    gen = torch.Generator().manual_seed(seed + 2)
    mask = torch.rand((batch, length), generator=gen) < keep
    out = adakd_loss(s, t, mask, ratio=percent / 100, divergence=name, idts=idts, c=c)
    n = int(mask.sum())
    assert math.isfinite(out.loss.item()) and out.loss.item() >= -1e-5
    assert out.difficulty.shape == (n,) and out.selected.shape == (n,)
    expected_k = 0 if n == 0 else max(1, percent * n // 100)  # k = max(1, floor(r·N)), exactly
    assert int(out.selected.sum()) == out.n_selected == expected_k
    if 0 < expected_k < n:  # the k hardest tokens are kept
        assert out.difficulty[out.selected].min() >= out.difficulty[~out.selected].max()
    assert torch.isnan(out.temperature[~out.selected]).all()
    assert torch.isfinite(out.temperature[out.selected]).all() and (out.temperature[out.selected] > 0).all()
    out.loss.backward()
    assert torch.isfinite(s.grad).all()
    if n == 0:
        assert out.loss.item() == 0.0


@PROPS
@given(name=st.sampled_from(NAMES), percent=st.integers(1, 100), scale=scales, seed=st.integers(0, 2**31 - 1))
def test_adakd_loss_of_identical_models_is_zero(name, percent, scale, seed):
    z = logits(seed, (2, 5, 30), scale)
    mask = torch.ones(2, 5, dtype=torch.bool)
    out = adakd_loss(z.clone(), z, mask, ratio=percent / 100, divergence=name)
    assert abs(out.loss.item()) <= 1e-5
    assert (out.difficulty.abs() <= 1e-3).all()  # Hellinger of identical rows (sqrt amplifies rounding)


# ---------------------------------------------------------------- the run-directory readers
RECORD = st.fixed_dictionaries(
    {
        "step": st.integers(0, 10**6),
        "loss": st.floats(allow_nan=False, allow_infinity=False, width=32),
        "kind": st.text(max_size=12),
    }
)


@PROPS
@given(records=st.lists(RECORD, max_size=8), cut=st.integers(0, 10**4))
def test_jsonl_cut_at_any_byte_keeps_every_complete_line(tmp_path, records, cut):
    lines = [json.dumps(r) + "\n" for r in records]
    data = "".join(lines).encode()
    cut = min(cut, len(data))
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(data[:cut])
    got = read_jsonl_report(path)
    complete, used = [], 0
    for r, line in zip(records, lines, strict=True):
        size = len(line.encode())
        if used + size - 1 <= cut:  # the object itself is whole (its newline may be cut off)
            complete.append(r)
        used += size
    assert got.records == complete
    assert got.problems == []

    # a later writer (a resumed run, `adakd eval`) appends: the new record is never glued to
    # the fragment a killed writer left; the fragment is reported once it is no longer last
    RunDir(tmp_path).append("metrics.jsonl", {"step": -1, "loss": 0.5, "kind": "after"})
    again = read_jsonl_report(path)
    assert again.records == [*complete, {"step": -1, "loss": 0.5, "kind": "after"}]
    fragment = data[:cut].rsplit(b"\n", 1)[-1]
    whole = len(complete) > 0 and fragment == json.dumps(complete[-1]).encode()
    assert len(again.problems) == (0 if not fragment or whole else 1), again.problems


@PROPS
@given(
    records=st.lists(RECORD, min_size=1, max_size=6),
    garbage=st.binary(min_size=1, max_size=40),
    where=st.integers(0, 6),
)
def test_jsonl_garbage_line_is_reported_and_the_rest_kept(tmp_path, records, garbage, where):
    bad = garbage.replace(b"\n", b" ").replace(b"\r", b" ")
    try:
        parsed = json.loads(bad.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):
        parsed = None
    assume(not bad.strip() == b"" and parsed is None)
    where = min(where, len(records))
    lines = [json.dumps(r).encode() for r in records]
    lines.insert(where, bad)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    got = read_jsonl_report(path)
    assert got.records == records
    assert len(got.problems) == 1 and f"line {where + 1}" in got.problems[0]


RUN_FILES = [
    "config.json",
    "status.json",
    "metrics.jsonl",
    "events.jsonl",
    "eval.jsonl",
    "tokens.parquet",
    "gradients.parquet",
]


@PROPS
@given(contents=st.dictionaries(st.sampled_from(RUN_FILES), st.binary(max_size=300), min_size=1))
def test_load_run_never_raises_on_random_bytes(tmp_path_factory, contents):
    run_dir = tmp_path_factory.mktemp("run")
    for name, data in contents.items():
        (run_dir / name).write_bytes(data)
    clear_cache()
    run = load_run(run_dir)
    assert isinstance(run.problems, list) and all(isinstance(p, str) for p in run.problems)
    assert run.state in ("running", "finished", "stopped", "failed", "crashed", "unknown")
    for frame in (run.metrics, run.events, run.tokens, run.gradients, run.evals):
        assert "step" in frame.columns


@pytest.mark.parametrize("name", ["config.json", "status.json", "metrics.jsonl", "eval.jsonl"])
def test_deeply_nested_json_is_a_problem_not_a_crash(tmp_path, name):
    """json.loads raises RecursionError (not ValueError) on very deep nesting: still a problem."""
    (tmp_path / name).write_text("[" * 100_000 + "\n")
    clear_cache()
    run = load_run(tmp_path)
    assert any(name in p for p in run.problems), run.problems
    assert read_jsonl_report(tmp_path / name).records == []


def test_load_run_reports_a_truncated_parquet(tmp_path):
    import pandas as pd

    frame = pd.DataFrame({"step": [0, 0], "split": ["current", "paper"], "group": ["hard", "easy"]})
    frame.to_parquet(tmp_path / "gradients.parquet")
    data = (tmp_path / "gradients.parquet").read_bytes()
    (tmp_path / "gradients.parquet").write_bytes(data[: len(data) // 2])
    clear_cache()
    run = load_run(tmp_path)
    assert run.gradients.empty and any("gradients.parquet: unreadable" in p for p in run.problems)
