"""How well a model predicts held-out reference replies, token by token (no generation, no seeds).

Two numbers per evaluation set, both over every response token (end token included) of every
(prompt, reference) pair, prompts and padding masked:

    CE  = mean_i −log q(y_i | x, y_<i)                     the model's cross-entropy on the references
    KL  = mean_i Σ_v p_T(v) · (log p_T(v) − log q(v))      forward KL teacher → model, at τ = 1

CE is what "the student learned the task" means without sampling noise; KL is how far the model's
next-token distribution is from the teacher's on unseen text (0 for the teacher itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
import torch.nn.functional as F

from adakd.data.tokenize import collate, encode_example, next_token_targets
from adakd.training.probes import untouched


def _pairs(prompts: Sequence) -> list:
    """One Example-like object per (prompt, reference); prompts carry ``references`` (EvalPrompt)
    or a single ``response`` (Example)."""
    out = []
    for p in prompts:
        for ref in getattr(p, "references", None) or (p.response,):
            out.append(replace(p, response=ref))
    return out


@torch.no_grad()
def reference_scores(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence,
    *,
    pad_id: int,
    max_prompt_length: int,
    max_length: int,
    teacher: torch.nn.Module | None = None,
    batch_size: int = 8,
) -> dict[str, float | None]:
    """``{"ce": CE, "kl_teacher": KL or None, "tokens": N}`` over the references of ``prompts``.

    Logits [B, T, V] are upcast to float32 per batch; the sums are accumulated in float64.
    ``teacher`` None (or the model itself) gives ``kl_teacher`` None.
    """
    encoded = [encode_example(tokenizer, ex, max_prompt_length, max_length) for ex in _pairs(prompts)]
    encoded = [e for e in encoded if any(t != -100 for t in e["labels"][1:])]
    if not encoded:
        raise ValueError("no reference token fits max_length: nothing to score")
    # similar lengths share a batch: less padding to run through both models (the sums do not
    # depend on the order beyond the last bits)
    encoded.sort(key=lambda e: len(e["input_ids"]))
    device = next(model.parameters()).device
    compare_to = None if teacher is model else teacher  # a model is not compared with itself
    ce_sum = kl_sum = 0.0
    count = 0
    with untouched(model):
        model.eval()
        for lo in range(0, len(encoded), batch_size):
            batch = {k: v.to(device) for k, v in collate(encoded[lo : lo + batch_size], pad_id).items()}
            targets, mask = next_token_targets(batch["labels"])
            logits = (
                model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                .logits[:, :-1]
                .float()
            )
            logq = F.log_softmax(logits, dim=-1)
            nll = -logq.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            ce_sum += nll[mask].double().sum().item()
            if compare_to is not None:
                t_logits = (
                    compare_to(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
                    .logits[:, :-1]
                    .float()
                )
                logp = F.log_softmax(t_logits, dim=-1)
                kl = (logp.exp() * (logp - logq)).sum(-1)
                kl_sum += kl[mask].double().sum().item()
            count += int(mask.sum())
    return {"ce": ce_sum / count, "kl_teacher": kl_sum / count if compare_to is not None else None, "tokens": count}
