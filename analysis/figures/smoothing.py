"""Curve smoothing shared by the curve pages (Compare, Token dynamics) and the report."""

from __future__ import annotations

import numpy as np


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average of a 1-D array (as Adam's moments):

        m_t = w·m_{t−1} + (1 − w)·v_t,  m_{−1} = 0;    ŝ_t = m_t / (1 − w^{t+1})

    i.e. ŝ_t = Σ_{i ≤ t} w^{t−i} v_i / Σ_{i ≤ t} w^{t−i}: a weighted mean of the values so far,
    with no lag towards the first value (w = 0 leaves the values unchanged)."""
    out = np.empty(len(values), dtype=float)
    m = 0.0
    for i, v in enumerate(values):
        m = weight * m + (1.0 - weight) * v
        out[i] = m / (1.0 - weight ** (i + 1))
    return out
