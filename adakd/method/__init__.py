"""The method's math as pure functions of tensors (torch only; docs/method.md).

difficulty.py        Hellinger token difficulty (and the other indicators)
divergences.py       the base divergences (fkl, rkl, skew, AB, ...) per token
latf.py              LATF: top-k selection and the ratio schedules (the adaptive controller)
idts.py              IDTS: per-token temperatures from the difficulty
temperature.py       CTKD's learned temperature (gradient reversal)
rank_violation.py    NMTKD's top-k rank-violation indicator
loss.py              adakd_loss: the loss on materialised logits; token_scores
hidden_loss.py       adakd_loss_from_hidden: the same loss from hidden states and heads, chunked
lm_head.py           LMHead (weight, bias, logit scale, soft cap) and LastHidden
pooled_selection.py  one LATF selection over every micro-batch (and rank) of a step
"""
