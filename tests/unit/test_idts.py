"""Unit tests of adakd.method.idts: the IDTS formula against plain-Python values, the median rule,
the zero-median guard, bounds and monotonicity on random inputs."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from adakd import idts_temperatures


def ref_tau(s, m, base=1.0, c=0.5, sign=-1.0):
    return base * math.exp(sign * c * math.tanh(math.log(max(s / m, 1e-8))))


def test_hand_computed_odd_count():
    s = [0.1, 0.4, 0.2]  # median 0.2
    got = idts_temperatures(torch.tensor(s, dtype=torch.float64), base_temperature=2.0, c=0.3)
    assert got.tolist() == pytest.approx([ref_tau(x, 0.2, 2.0, 0.3) for x in s], rel=1e-12)
    assert got[2].item() == pytest.approx(2.0)  # the median token keeps τ_base
    assert got[1] < 2.0 < got[0]  # hard → sharper, easy → smoother


def test_even_count_uses_the_lower_median():
    s = [0.4, 0.1, 0.3, 0.2]  # lower median 0.2 (not 0.25)
    got = idts_temperatures(torch.tensor(s, dtype=torch.float64))
    assert got.tolist() == pytest.approx([ref_tau(x, 0.2) for x in s], rel=1e-12)


def test_zero_difficulty_token_is_floored_at_1e_minus_8():
    got = idts_temperatures(torch.tensor([0.0, 0.5, 0.6], dtype=torch.float64), c=0.5)
    assert got[0].item() == pytest.approx(math.exp(-0.5 * math.tanh(math.log(1e-8))), rel=1e-12)


def test_zero_median_gives_base_temperature():
    got = idts_temperatures(torch.tensor([0.0, 0.0, 0.3]), base_temperature=1.5)
    assert torch.equal(got, torch.full((3,), 1.5))


def test_inverse_ablation_flips_the_sign():
    s = [0.1, 0.4, 0.2]
    got = idts_temperatures(torch.tensor(s, dtype=torch.float64), c=0.5, inverse=True)
    assert got.tolist() == pytest.approx([ref_tau(x, 0.2, sign=+1.0) for x in s], rel=1e-12)


def test_single_and_empty_inputs():
    assert idts_temperatures(torch.tensor([0.7]), 1.3).tolist() == pytest.approx([1.3])
    assert idts_temperatures(torch.empty(0)).shape == (0,)


def test_detached_even_from_a_graph():
    s = torch.rand(5, requires_grad=True)
    assert not idts_temperatures(s).requires_grad


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40), st.floats(0.1, 5.0), st.floats(0.0, 2.0)
)
def test_bounds_and_monotone_decreasing(values, base, c):
    s = torch.tensor(values, dtype=torch.float64)
    tau = idts_temperatures(s, base, c)
    assert (tau >= base * math.exp(-c) * (1 - 1e-12)).all()
    assert (tau <= base * math.exp(c) * (1 + 1e-12)).all()
    order = torch.argsort(s)
    assert (tau[order].diff() <= 1e-12).all()  # harder token → lower (or equal) τ


def test_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        idts_temperatures(torch.rand(2, 3))
    with pytest.raises(ValueError, match="base_temperature"):
        idts_temperatures(torch.rand(3), base_temperature=0.0)
    with pytest.raises(ValueError, match="c must be >= 0"):
        idts_temperatures(torch.rand(3), c=-0.1)
