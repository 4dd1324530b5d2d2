"""adakd: AdaKD, LLM-oriented token-adaptive knowledge distillation (Xie et al., AAAI 2026).

The loss API is imported eagerly and needs only torch::

    from adakd import adakd_loss
    out = adakd_loss(student_logits, teacher_logits, mask, ratio=0.5, divergence="rkl")
    out.loss.backward()

``train``, ``resume``, ``RunConfig`` and ``PRESETS`` are loaded on first use (module-level
``__getattr__``), so ``import adakd`` stays light: no transformers, streamlit or plotly.
"""

from __future__ import annotations

import importlib

from .method.difficulty import hellinger, token_difficulty
from .method.divergences import DIVERGENCES, divergence
from .method.hidden_loss import adakd_loss_from_hidden, token_scores_from_hidden
from .method.idts import idts_temperatures
from .method.latf import CosineRatio, FixedRatio, LATFController, LinearRatio, make_ratio_schedule, select_tokens
from .method.lm_head import LMHead
from .method.loss import AdaKDOutput, adakd_loss, token_scores
from .method.pooled_selection import PooledShare, TokenScores, pool_selection

__version__ = "0.1.0"

_LAZY = {
    "train": "adakd.training.trainer",
    "resume": "adakd.training.trainer",
    "RunConfig": "adakd.config",
    "PRESETS": "adakd.presets",
}

__all__ = [
    "hellinger",
    "token_difficulty",
    "divergence",
    "DIVERGENCES",
    "select_tokens",
    "idts_temperatures",
    "LATFController",
    "FixedRatio",
    "LinearRatio",
    "CosineRatio",
    "make_ratio_schedule",
    "adakd_loss",
    "adakd_loss_from_hidden",
    "LMHead",
    "AdaKDOutput",
    "token_scores",
    "token_scores_from_hidden",
    "pool_selection",
    "PooledShare",
    "TokenScores",
    *_LAZY,
    "__version__",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'adakd' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: __getattr__ runs once per name
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
