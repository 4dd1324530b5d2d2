"""Unit tests of adakd.method.latf: token selection and the ratio controller / schedules on scripted
loss sequences, with every expected number worked out by hand in the test."""

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adakd import CosineRatio, FixedRatio, LATFController, LinearRatio, make_ratio_schedule, select_tokens


# ------------------------------------------------------------------ selection
@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.floats(0.01, 1.0), st.integers(0, 2**31 - 1))
def test_selects_the_k_hardest(n, ratio, seed):
    d = torch.rand(n, generator=torch.Generator().manual_seed(seed))
    sel = select_tokens(d, ratio)
    assert sel.dtype == torch.bool and sel.shape == (n,)
    assert int(sel.sum()) == max(1, math.floor(ratio * n + 1e-9))
    if not sel.all():
        assert d[sel].min() >= d[~sel].max()


def test_ratio_times_n_is_floored_as_intended():
    assert int(select_tokens(torch.rand(100), 0.29).sum()) == 29  # 0.29·100 = 28.999… in floats
    assert int(select_tokens(torch.rand(10), 0.05).sum()) == 1  # at least one token
    assert int(select_tokens(torch.rand(7), 0.5).sum()) == 3


def test_ties_are_broken_by_position():
    d = torch.tensor([0.2, 0.5, 0.5, 0.5, 0.1, 0.5])
    assert select_tokens(d, 0.5).tolist() == [False, True, True, True, False, False]
    assert select_tokens(torch.zeros(6), 0.5).tolist() == [True, True, True, False, False, False]


def test_selection_is_pooled_not_per_sequence():
    # all of the hard tokens sit in the "first sequence": none of the second is selected
    d = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])
    assert select_tokens(d, 0.5).tolist() == [True, True, True, False, False, False]


def test_selection_bad_input():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        select_tokens(torch.rand(4), 0.0)
    with pytest.raises(ValueError, match="1-D"):
        select_tokens(torch.rand(2, 2), 0.5)
    assert select_tokens(torch.empty(0), 0.5).shape == (0,)


# ------------------------------------------------------------------ the controller
def test_warmup_then_decrease_by_delta_each_time_ema_beats_ref():
    c = LATFController(beta=0.0, eps=0.05, delta=0.05, warmup_steps=2)  # β = 0: ema = loss
    assert c.ratio == 1.0
    assert c.update(10.0) == 1.0 and c.ref is None  # n = 1 ≤ warm-up
    assert c.update(3.0) == 1.0 and c.ref is None  # n = 2 ≤ warm-up, even for a big drop
    assert c.update(10.0) == 1.0 and c.ref == 10.0  # n = 3: reference set
    assert c.update(9.0) == pytest.approx(0.95)  # 9 < 10·0.95
    assert c.ref == 9.0 and c.last_change == (1.0, pytest.approx(0.95))
    assert c.update(8.5) == pytest.approx(0.9025)  # 8.5 < 9·0.95 = 8.55
    assert c.update(8.2) == pytest.approx(0.9025)  # 8.2 ≥ 8.5·0.95 = 8.075: unchanged
    assert c.last_change is None and c.ref == 8.5
    assert c.update(9.0) == pytest.approx(0.9025 * 1.05)  # 9.0 > 8.5·1.05 = 8.925: back up
    assert c.ref == 9.0 and c.n == 7


def test_ema_follows_beta():
    c = LATFController(beta=0.5, eps=0.1, delta=0.2, warmup_steps=0)
    c.update(8.0)  # ema 8, ref 8
    c.update(4.0)  # ema 0.5·8 + 0.5·4 = 6 < 8·0.9 → r = 0.8, ref 6
    assert c.ema == 6.0 and c.ratio == pytest.approx(0.8) and c.ref == 6.0
    c.update(6.0)  # ema 6: unchanged
    c.update(10.0)  # ema 8 > 6·1.1 → r = 0.8·1.2 = 0.96
    assert c.ema == 8.0 and c.ratio == pytest.approx(0.96)


def test_bounds_min_ratio_and_one():
    c = LATFController(beta=0.0, eps=0.0, delta=0.5, min_ratio=0.2)
    for k in range(10):
        c.update(100.0 / (k + 1))  # always falling
    assert c.ratio == 0.2
    for k in range(10):
        c.update(1000.0 * (k + 1))  # always rising
    assert c.ratio == 1.0


def test_state_round_trip_continues_identically():
    losses = [5.0, 4.0, 3.5, 3.0, 3.2, 2.0, 2.5, 4.0, 1.0, 1.1]
    straight = LATFController(beta=0.5, warmup_steps=1)
    expected = [straight.update(x) for x in losses]
    first = LATFController(beta=0.5, warmup_steps=1)
    got = [first.update(x) for x in losses[:4]]
    state = json.loads(json.dumps(first.state_dict()))  # what trainer_state.json holds
    second = LATFController(beta=0.5, warmup_steps=1)
    second.load_state_dict(state)
    assert (second.ratio, second.ema, second.ref, second.n) == (first.ratio, first.ema, first.ref, first.n)
    got += [second.update(x) for x in losses[4:]]
    assert got == expected
    assert len(set(expected)) > 1  # the script did move r


def test_controller_rejects_bad_values():
    with pytest.raises(ValueError, match="warmup_steps"):
        LATFController(warmup_steps=1.5)
    with pytest.raises(ValueError, match="beta"):
        LATFController(beta=1.0)
    with pytest.raises(ValueError, match="min_ratio"):
        LATFController(min_ratio=0.0)
    with pytest.raises(ValueError, match="non-finite"):
        LATFController().update(float("nan"))


# ------------------------------------------------------------------ schedules
def test_linear_schedule_hits_both_ends():
    s = LinearRatio(1.0, 0.5, total_steps=5)
    seen = [s.ratio] + [s.update(1.0) for _ in range(5)]
    assert seen == pytest.approx([1.0, 0.875, 0.75, 0.625, 0.5, 0.5])
    assert s.last_change is None  # past the end: constant


def test_cosine_schedule():
    s = CosineRatio(1.0, 0.2, total_steps=3)
    # f = 0, 0.5, 1 → r = 0.2 + 0.8·½(1 + cos πf) = 1.0, 0.6, 0.2
    seen = [s.ratio, s.update(0.0), s.update(0.0)]
    assert seen == pytest.approx([1.0, 0.6, 0.2])
    assert s.last_change == (pytest.approx(0.6), pytest.approx(0.2))


def test_fixed_and_off():
    f = FixedRatio(0.4)
    assert f.ratio == 0.4 and f.update(3.0) == 0.4 and f.last_change is None
    off = make_ratio_schedule("off", 100)
    assert off.ratio == 1.0 and off.update(1.0) == 1.0


def test_make_ratio_schedule():
    a = make_ratio_schedule("adaptive", 100, beta=0.9, eps=0.1, delta=0.2, warmup=0.05, min_ratio=0.3)
    assert isinstance(a, LATFController)
    assert (a.beta, a.eps, a.delta, a.warmup_steps, a.min_ratio, a.ratio) == (0.9, 0.1, 0.2, 5, 0.3, 1.0)
    assert make_ratio_schedule("fixed", 10, start=0.7).ratio == 0.7
    lin = make_ratio_schedule("linear", 11, start=1.0, end=0.5)
    assert isinstance(lin, LinearRatio) and lin.update(0.0) == pytest.approx(0.95)
    assert isinstance(make_ratio_schedule("cosine", 10, 1.0, 0.5), CosineRatio)
    with pytest.raises(ValueError, match="end ratio"):
        make_ratio_schedule("linear", 10)
    with pytest.raises(ValueError, match="adaptive, off, fixed, linear, cosine"):
        make_ratio_schedule("step", 10)
    with pytest.raises(ValueError, match="total_steps"):
        make_ratio_schedule("adaptive", 0)


@pytest.mark.parametrize("kind", ["adaptive", "off", "fixed", "linear", "cosine"])
def test_every_schedule_state_round_trips_through_json(kind):
    make = lambda: make_ratio_schedule(kind, 20, start=0.9, end=0.3, beta=0.5, warmup=0.1)  # noqa: E731
    losses = [3.0, 2.0, 1.5, 1.0, 1.2, 0.5, 0.7, 0.4]
    straight = make()
    expected = [straight.update(x) for x in losses]
    a = make()
    [a.update(x) for x in losses[:3]]
    b = make()
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert b.ratio == a.ratio
    assert [b.update(x) for x in losses[3:]] == expected[3:]


def test_loading_another_kind_is_an_error():
    with pytest.raises(ValueError, match="cannot load"):
        LinearRatio(1.0, 0.5, 10).load_state_dict(LATFController().state_dict())
