"""A causal LM's output head and its last hidden state, for losses that never build ``[B, T, V]``.

    z = head(h) = cap · tanh(u / cap),   u = scale · (h Wᵀ + b)     (no cap: z = u)

``LMHead.of(model)`` reads W and b from ``get_output_embeddings()`` and the two model-specific
factors from its config: Cohere's ``logit_scale`` (z = u · logit_scale), Granite's
``logits_scaling`` (z = u / logits_scaling) and Gemma 2's ``final_logit_softcapping``.
``LastHidden(model)`` is a module whose forward returns the decoder's last hidden state (after
its final norm: what the head reads), so it can be wrapped in DistributedDataParallel like the
model itself. Tested: ``LMHead.of(m)(LastHidden(m)(ids))`` equals ``m(ids).logits`` for Llama,
Gemma 2, Cohere, Granite and GPT-2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LMHead:
    """A model's output head: z = cap · tanh(u / cap), u = scale · (h Wᵀ + b).

    weight ``[V, H]`` (the student's keeps its gradient; often tied to the input embeddings),
    bias ``[V]`` or None, scale (Cohere's ``logit_scale``, 1 / Granite's ``logits_scaling``),
    softcap (Gemma 2's ``final_logit_softcapping``) or None. ``dtype``: the dtype of the matrix
    products (the autocast dtype of the run), default the weight's.
    """

    weight: Tensor
    bias: Tensor | None = None
    scale: float = 1.0
    softcap: float | None = None
    dtype: torch.dtype | None = None

    @classmethod
    def of(cls, model: torch.nn.Module, dtype: torch.dtype | None = None) -> LMHead:
        """The head of a transformers causal LM (``get_output_embeddings`` and its config)."""
        head = model.get_output_embeddings()  # type: ignore[operator]
        if not isinstance(head, torch.nn.Linear):
            raise ValueError(
                f"{type(model).__name__}'s output head is {type(head).__name__}, "
                "not a Linear layer: use loss_input=logits"
            )
        config = model.config
        scale = float(getattr(config, "logit_scale", None) or 1.0)  # Cohere: logits · logit_scale
        scale /= float(getattr(config, "logits_scaling", None) or 1.0)  # Granite: logits / logits_scaling
        softcap = getattr(config, "final_logit_softcapping", None)  # Gemma 2: cap · tanh(z / cap)
        return cls(head.weight, head.bias, scale, float(softcap) if softcap else None, dtype)

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    def pre_activation(self, hidden: Tensor) -> Tensor:
        """u = scale · (h Wᵀ + b) ``[R, H] -> [R, V]`` in ``dtype``, no gradient (a building block)."""
        dtype = self.dtype or self.weight.dtype
        with torch.no_grad():
            bias = self.bias.detach().to(dtype) if self.bias is not None else None
            u = F.linear(hidden.detach().to(dtype), self.weight.detach().to(dtype), bias)
            return u.mul_(self.scale) if self.scale != 1.0 else u

    def activate(self, u: Tensor) -> Tensor:
        """z from u: the soft cap when the model has one (differentiable)."""
        return u if self.softcap is None else self.softcap * torch.tanh(u / self.softcap)

    def __call__(self, hidden: Tensor) -> Tensor:
        """z = head(h) with autograd through h, W and b (the materialised logits)."""
        dtype = self.dtype or self.weight.dtype
        bias = self.bias.to(dtype) if self.bias is not None else None
        u = F.linear(hidden.to(dtype), self.weight.to(dtype), bias)
        return self.activate(u * self.scale if self.scale != 1.0 else u)


class LastHidden(torch.nn.Module):
    """``forward(input_ids, attention_mask) -> [B, T, H]``: the causal LM's decoder output.

    The decoder is ``model.get_decoder()`` (transformers' lookup: ``model.model`` for Llama,
    ``model.transformer`` for GPT-2). The wrapped model's parameters are this module's, so
    DDP over it all-reduces the whole model, head included (the head's gradient comes from the
    loss, outside this forward)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        decoder = model.get_decoder()  # type: ignore[operator]
        if decoder is model:
            raise ValueError(
                f"{type(model).__name__} has no separate decoder to read hidden states from: use loss_input=logits"
            )
        self.decoder = decoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        return self.decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
