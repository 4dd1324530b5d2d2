"""NMTKD's top-k rank-violation difficulty indicator (the paper's Table 3; docs/method.md §1.1).

Per token, with p = softmax(z_T) (teacher) and q = softmax(z_S) (student) at τ = 1,
T_k the teacher's k most probable tokens, S_k the student's, t1 the teacher's top-1:

    s = Σ_{u ∈ T_k} ReLU( q(u) − q(t1) )                                  (top-1 violations)
      + Σ_{v ∈ S_k} Σ_{u ∈ T_k, p(u) > p(v)} ReLU( q(v) − q(u) )          (pair violations)

The first sum counts how far the student ranks a teacher top-k token above the teacher's
top-1; the second, how far a student top-k token v is ranked above a token u that the teacher
prefers to v. Both are 0 when the student orders the tokens as the teacher does. s ∈ [0, k + k²].

Note: the paper uses k = 5; the public release passes k = 10. k is the run setting
``indicator_topk`` (default 5).
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def rank_violation(logq: Tensor, logp: Tensor, k: int = 5) -> Tensor:
    """Top-k rank-violation score ``[R, V], [R, V] -> [R]`` from log-probabilities (no gradient).

    ``logq``/``logp``: the student's / teacher's log-softmax at τ = 1 (−inf allowed for masked
    entries). k is capped at V. Ties in a top-k are broken by ``torch.topk`` (unspecified order
    among equal values; the score is the same whichever tied token is taken as t1).
    """
    if k < 1:
        raise ValueError(f"rank-violation k must be >= 1 (got {k})")
    k = min(int(k), logq.shape[-1])
    top_t = logp.topk(k, dim=-1).indices  # [R, k], descending: column 0 is t1
    top_s = logq.topk(k, dim=-1).indices  # [R, k]
    q_t = logq.gather(-1, top_t).exp()  # q(u), u ∈ T_k
    q_s = logq.gather(-1, top_s).exp()  # q(v), v ∈ S_k
    p_t = logp.gather(-1, top_t)  # log p(u): the order of p is that of log p
    p_s = logp.gather(-1, top_s)  # log p(v)
    top1 = (q_t - q_t[:, :1]).clamp_min(0.0).sum(-1)
    pairs = (q_s[:, :, None] - q_t[:, None, :]).clamp_min(0.0)  # [R, k (v), k (u)]
    pairs = pairs * (p_t[:, None, :] > p_s[:, :, None])
    return top1 + pairs.sum((-1, -2))
