"""Which prompt tokens drive a model's prediction of one response token (Captum ≥ 0.9).

    res_t = attribute_token(teacher, tok, result.prompt_text, result.response_ids, 7)
    res_s = attribute_token(student, tok, result.prompt_text, result.response_ids, 7)
    attribution_figure(res_t, res_s)          # side-by-side Plotly heat maps

The target is response token ``i`` predicted from prompt + response[:i]; the attribution
target is its log-probability (``attr_target="log_prob"``). Two methods:

- ``feature_ablation``: ``LLMAttribution(FeatureAblation(model), tokenizer)``; a prompt token's
  score is log p(target) with the prompt intact minus log p(target) with that token replaced
  by the baseline token (one forward per prompt token, no gradient).
- ``integrated_gradients``: ``LLMGradientAttribution(LayerIntegratedGradients(model,
  model.get_input_embeddings()), tokenizer)``; the path integral of ∂ log p(target)/∂e from
  the baseline token's embedding to the real one, summed over the embedding dimension
  (``n_steps`` points, ``internal_batch_size`` of them per backward pass).

Features are the prompt tokens except special tokens (skipped, like ``TextTokenInput``'s
``skip_tokens``); the response prefix rides along unperturbed. Lengths are bounded
(``max_prompt_tokens``, ``max_total_tokens``): feature ablation costs one forward per prompt
token, integrated gradients ``n_steps`` forward+backward passes whose activations scale with
the sequence length. Only the last position's logits are computed (:class:`LastTokenLogits`).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch
from captum.attr import (
    FeatureAblation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    TextTokenInput,
)
from plotly.subplots import make_subplots

from adakd.training.probes import untouched
from analysis.style import apply_style, token_label

METHODS = ("feature_ablation", "integrated_gradients")


@dataclass(frozen=True)
class AttributionResult:
    """Scores of the prompt tokens (``tokens[j]`` has ``scores[j]``) for one target token."""

    tokens: list[str]
    scores: np.ndarray  # [n_features] float64, in nats of log p(target)
    method: str
    target_token: str
    target_token_id: int = -1
    target_index: int = -1  # index of the target within the response
    target_log_prob: float = float("nan")  # log p(target | prompt, prefix) under the model
    positions: tuple[int, ...] = ()  # index of each scored token within the prompt


class PromptTokenInput(TextTokenInput):
    """A ``TextTokenInput`` built from token ids instead of text.

    Re-tokenising the formatted prompt could give other ids than the explorer scored (a bos
    added, a merge across the prompt/response seam), so the ids are given. The features are
    the prompt tokens not in ``skip_ids``; the response prefix is appended to the model input
    but is no feature (its ``itp_mask`` entries are False), so it is never perturbed.
    """

    def __init__(
        self, prompt_ids: Sequence[int], prefix_ids: Sequence[int], tokenizer, baseline_id: int, skip_ids: set[int]
    ) -> None:  # noqa: D107 (super() re-tokenises)
        ids = torch.tensor([list(prompt_ids) + list(prefix_ids)], dtype=torch.long)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[0, : len(prompt_ids)] = torch.tensor([int(i) not in skip_ids for i in prompt_ids], dtype=torch.bool)
        self.inp_tensor = ids
        self.itp_mask = mask
        self.itp_tensor = ids[mask].unsqueeze(0)
        self.skip_tokens = sorted(skip_ids)
        self.tokenizer = tokenizer
        self.values = [_decode(tokenizer, i) for i in self.itp_tensor[0].tolist()]
        self.n_itp_features = len(self.values)
        self.baselines = int(baseline_id)
        self.positions = tuple(int(p) for p in torch.nonzero(mask[0]).flatten())


def _decode(tokenizer, token_id: int) -> str:
    return tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _encode(tokenizer, text_or_ids) -> list[int]:
    if isinstance(text_or_ids, str):
        return list(tokenizer(text_or_ids, add_special_tokens=False)["input_ids"])
    return [int(i) for i in text_or_ids]


class LastTokenLogits(torch.nn.Module):
    """The model, computing logits for the last position only (``logits_to_keep=1``).

    Both Captum wrappers read only ``logits[:, -1]`` here (one target token, decoded token by
    token), so the other ``[B, L, V]`` logits would be wasted memory (and, for gradients, kept
    for backward). Models whose forward has no ``logits_to_keep`` are called as they are.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.keep = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object):
        extra = {"logits_to_keep": 1} if self.keep else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **extra)


def baseline_token_id(tokenizer) -> int:
    """The token that stands for "absent": unk, else pad, else 0 (Captum's default)."""
    for candidate in (tokenizer.unk_token_id, tokenizer.pad_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


def attribute_token(
    model,
    tokenizer,
    prompt_text: str | Sequence[int],
    response: str | Sequence[int],
    target_token_index: int,
    *,
    method: str = "feature_ablation",
    max_prompt_tokens: int = 128,
    max_total_tokens: int = 256,
    n_steps: int = 16,
    internal_batch_size: int = 2,
    baseline_id: int | None = None,
) -> AttributionResult:
    """Attribute the prediction of ``response[target_token_index]`` to the prompt tokens.

    prompt_text: the formatted prompt (``ExplorerResult.prompt_text``; tokenised without adding
    special tokens, as the chat template already holds them) or its token ids
    (``ExplorerResult.prompt_ids``, exact). response: the response text or ids
    (``ExplorerResult.response_ids``). Returns one score per non-special prompt token.
    Raises ValueError for an unknown method, a target index outside the response, a prompt
    longer than ``max_prompt_tokens`` (the message gives both lengths), or prompt + response
    prefix longer than ``max_total_tokens``. Memory: integrated gradients keeps activations of
    ``internal_batch_size`` sequences of up to ``max_total_tokens`` for backward (≈1 GB for the
    default teacher at the defaults); feature ablation runs without gradient.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    prompt_ids, response_ids = _encode(tokenizer, prompt_text), _encode(tokenizer, response)
    if not prompt_ids:
        raise ValueError("the prompt is empty: nothing to attribute to")
    if len(prompt_ids) > max_prompt_tokens:
        raise ValueError(
            f"the prompt is {len(prompt_ids)} tokens; attributions are limited to "
            f"max_prompt_tokens={max_prompt_tokens} (their time and memory grow with the "
            "prompt). Shorten the prompt or raise max_prompt_tokens."
        )
    if len(prompt_ids) + target_token_index > max_total_tokens:
        raise ValueError(
            f"the prompt ({len(prompt_ids)} tokens) plus the response before the target "
            f"({target_token_index} tokens) is {len(prompt_ids) + target_token_index} tokens; "
            f"attributions are limited to max_total_tokens={max_total_tokens} to bound memory. "
            "Pick an earlier response token or raise max_total_tokens."
        )
    if not 0 <= target_token_index < len(response_ids):
        raise ValueError(
            f"target_token_index must be in [0, {len(response_ids) - 1}] for a response of "
            f"{len(response_ids)} tokens (got {target_token_index})"
        )
    if n_steps < 1 or internal_batch_size < 1:
        raise ValueError(f"n_steps and internal_batch_size must be >= 1 (got {n_steps}, {internal_batch_size})")
    target_id = response_ids[target_token_index]
    skip = set(getattr(tokenizer, "all_special_ids", []) or [])
    inp = PromptTokenInput(
        prompt_ids,
        response_ids[:target_token_index],
        tokenizer,
        baseline_token_id(tokenizer) if baseline_id is None else baseline_id,
        skip,
    )
    if inp.n_itp_features == 0:
        raise ValueError("the prompt has only special tokens: nothing to attribute to")
    target = torch.tensor([target_id])
    wrapped = LastTokenLogits(model)
    with untouched(model):
        if method == "feature_ablation":
            with torch.no_grad():
                llm = LLMAttribution(FeatureAblation(wrapped), tokenizer, attr_target="log_prob")
                # one target token, no KV cache: exactly one forward per ablated prompt token
                out = llm.attribute(inp, target=target, forward_in_tokens=True, use_cached_outputs=False)
        else:
            with _grad_enabled():
                llm = LLMGradientAttribution(LayerIntegratedGradients(wrapped, model.get_input_embeddings()), tokenizer)
                out = llm.attribute(inp, target=target, n_steps=n_steps, internal_batch_size=internal_batch_size)
        log_prob = _target_log_prob(wrapped, inp.inp_tensor, target_id)
    scores = out.seq_attr.detach().float().cpu().numpy().astype(np.float64)
    return AttributionResult(
        tokens=list(inp.values),
        scores=scores,
        method=method,
        target_token=_decode(tokenizer, target_id),
        target_token_id=int(target_id),
        target_index=int(target_token_index),
        target_log_prob=log_prob,
        positions=inp.positions,
    )


@contextlib.contextmanager
def _grad_enabled():
    """Gradients on for the attribution even when the caller runs under no_grad/inference."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@torch.no_grad()
def _target_log_prob(model: LastTokenLogits, input_ids: torch.Tensor, target_id: int) -> float:
    """log p(target | input_ids) under the model, from the last position's logits."""
    logits = model(input_ids=input_ids.to(model.device)).logits[0, -1].float()
    return float(torch.log_softmax(logits, dim=-1)[target_id])


def attribution_figure(teacher_result: AttributionResult, student_result: AttributionResult) -> go.Figure:
    """Teacher and student attributions side by side: one heat-map column per model, one row
    per prompt token. Each panel is scaled by its own largest |score| (so both use the colour
    range −1…1; raw scores are in the hover); red raises log p(target), blue lowers it."""
    results = (("teacher", teacher_result), ("student", student_result))
    same_tokens = list(teacher_result.tokens) == list(student_result.tokens)
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=same_tokens,
        horizontal_spacing=0.04 if same_tokens else 0.2,
        subplot_titles=[f"{who}: log p = {r.target_log_prob:.2f}" for who, r in results],
    )
    for col, (who, res) in enumerate(results, start=1):
        scores = np.asarray(res.scores, dtype=np.float64)
        peak = float(np.max(np.abs(scores))) if scores.size else 0.0
        scaled = scores / peak if peak > 0 else np.zeros_like(scores)
        labels = [token_label(i, t) for i, t in enumerate(res.tokens)]
        fig.add_trace(
            go.Heatmap(
                z=scaled[:, None],
                y=labels,
                x=[who],
                customdata=scores[:, None],
                name=who,
                colorscale="RdBu_r",
                zmin=-1,
                zmax=1,
                zmid=0,
                showscale=col == 2,
                colorbar={"title": "score / max |score|"},
                hovertemplate="%{y}<br>score %{customdata:.4f} nats<br>scaled %{z:.2f}<extra>" + who + "</extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    target = token_label(teacher_result.target_index, teacher_result.target_token)
    method = teacher_result.method.replace("_", " ")
    fig = apply_style(fig, f"Prompt tokens driving response token {target} ({method})")
    fig.update_layout(height=min(4000, 160 + 18 * max(len(teacher_result.tokens), len(student_result.tokens))))
    return fig
