"""A width-pruned student: the teacher with the least active MLP neurons of every layer removed.

Why this student (docs/study_regime.md has the measurements): the paper distils a student that is
already a competent language model and refines it token by token. A layer subset of the default
SmolLM2-135M teacher is not one: removing any eight or more of its 30 layers leaves a model worse
than uniform on held-out replies (cross-entropy 9.5-23 nats against the teacher's 1.5), so a short
run spends all its steps relearning language. Removing MLP *width* instead, ranked by how active each
neuron is on training text (the activation-based importance of Minitron, Muralidharan et al. 2024),
keeps every layer and starts far closer: 768 of 1,536 neurons per layer gives 94.7 M parameters and
4.6 nats, 1,152 gives 2.7. Ranking by weight norms instead fails (15.4 nats at 768).

Importance of neuron i in layer l (x: the input of ``down_proj``, i.e. act(gate(h)) * up(h)):

    I_l(i) = Σ_{valid tokens t} |x_t(i)|                      shapes: x [B, T, F] → I_l [F]

The student keeps, in every layer, the ``keep`` neurons of largest I_l in their original order,
so it is a plain model of the teacher's class with ``intermediate_size = keep`` (saveable and
loadable anywhere). Deterministic: the calibration batch is fixed by the run's data split.

The importance pass is one teacher forward over the calibration batch (~15 s on 2 CPU cores for
64 examples: more than a tenth of a demo run's set-up and evaluation), and every run of a study
computes the same one, so :func:`cached_neuron_importance` keeps its result in
``<adakd cache>/pruning/<key>.safetensors``, keyed by the teacher's weights and the batch.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from typing import TYPE_CHECKING, Protocol, cast

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


# bump when what neuron_importance computes changes: older cached results are then ignored
IMPORTANCE_CACHE_FORMAT = 1
log = logging.getLogger(__name__)


class GatedMLP(Protocol):
    """What width pruning needs of a decoder layer's MLP (``_mlps`` checks it at run time)."""

    gate_proj: nn.Linear
    up_proj: nn.Linear
    down_proj: nn.Linear


def _mlps(model: nn.Module) -> list[GatedMLP]:
    """The gated MLP of every decoder layer (Llama, Qwen2, Mistral, Gemma: gate/up/down_proj)."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not all(hasattr(layer, "mlp") for layer in layers):
        raise ValueError(f"width pruning needs a decoder with model.layers[i].mlp; {type(model).__name__} has none")
    mlps = [layer.mlp for layer in layers]
    for mlp in mlps:
        if not all(isinstance(getattr(mlp, n, None), nn.Linear) for n in ("gate_proj", "up_proj", "down_proj")):
            raise ValueError(
                f"width pruning needs gated MLPs (gate_proj, up_proj, down_proj); {type(mlp).__name__} is not"
            )
    return cast(list[GatedMLP], mlps)


@torch.no_grad()
def neuron_importance(model: nn.Module, batch: dict) -> list[torch.Tensor]:
    """I_l(i) = Σ over the batch's attended tokens of |input of down_proj|, one [F] tensor per layer.

    ``batch``: ``input_ids`` and ``attention_mask`` [B, T] (e.g. from ``adakd.data.tokenize.collate``).
    """
    mlps = _mlps(model)
    mask = batch["attention_mask"].bool()
    sums: list[torch.Tensor | None] = [None] * len(mlps)

    def recorder(index: int):
        def hook(module, inputs):
            x = inputs[0].float().abs()[mask.to(inputs[0].device)]  # [N, F]: attended tokens only
            sums[index] = x.sum(0).cpu()

        return hook

    handles = [mlp.down_proj.register_forward_pre_hook(recorder(i)) for i, mlp in enumerate(mlps)]
    try:
        device = next(model.parameters()).device
        model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device), use_cache=False
        )
    finally:
        for handle in handles:
            handle.remove()
    return [s for s in sums if s is not None]


def _slice_linear(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of ``linear`` keeping rows (dim 0: output features) or columns (dim 1: inputs) ``index``."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device)).clone()
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None, device=weight.device, dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        bias = linear.bias.detach()
        new.bias.data.copy_(bias.index_select(0, index.to(bias.device)) if dim == 0 else bias)
    return new


def importance_key(model: nn.Module, batch: dict) -> str:
    """sha256 of what :func:`neuron_importance` depends on: the model's weights (every tensor of
    its state dict), its class, the batch's ``input_ids`` and ``attention_mask``, the torch
    version and IMPORTANCE_CACHE_FORMAT."""
    from adakd.evaluation.cache import weights_digest

    digest = hashlib.sha256(
        f"{IMPORTANCE_CACHE_FORMAT}|{type(model).__name__}|{torch.__version__}|{weights_digest(model)}|".encode()
    )
    for name in ("input_ids", "attention_mask"):
        t = batch[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def cached_neuron_importance(model: nn.Module, batch: dict) -> list[torch.Tensor]:
    """:func:`neuron_importance` through the cache ``<adakd cache>/pruning/<key>.safetensors``.

    A hit returns the tensors the same computation stored; a miss computes and stores them
    (written atomically; a failed write only logs: the cache is optional). An unreadable entry
    is renamed aside (``.unreadable``), never trusted or overwritten, and recomputed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    from adakd.models.assets import cache_dir
    from adakd.runs.atomic import atomic_path

    layers = len(_mlps(model))
    path = cache_dir() / "pruning" / f"{importance_key(model, batch)}.safetensors"
    try:
        stored = load_file(path)
        return [stored[f"layer.{i}"] for i in range(layers)]
    except FileNotFoundError:
        pass
    except (OSError, SafetensorError, KeyError) as err:
        aside = path.with_name(path.name + ".unreadable")
        log.warning("setting aside the unreadable cached neuron importance %s (%s) as %s", path, err, aside.name)
        os.replace(path, aside)
    importance = neuron_importance(model, batch)
    try:
        with atomic_path(path) as tmp:
            save_file({f"layer.{i}": t.contiguous() for i, t in enumerate(importance)}, str(tmp))
    except OSError as err:
        log.warning("could not cache the neuron importance in %s (%s)", path.parent, err)
    return importance


def width_pruned_student(
    teacher: PreTrainedModel, calibration: dict, keep: int, *, cache: bool = False
) -> PreTrainedModel:
    """A copy of ``teacher`` whose every MLP keeps its ``keep`` most important neurons.

    Attention, embeddings, norms and the (tied) head are copied unchanged. The copy's config has
    ``intermediate_size = keep``; it shares no storage with the teacher. ``cache``: take the
    importance from :func:`cached_neuron_importance` (the same numbers, computed once).
    """
    mlps = _mlps(teacher)
    width = mlps[0].down_proj.in_features
    if not 1 <= keep <= width:
        raise ValueError(f"student_mlp_keep must be in [1, {width}] (the teacher's MLP width), got {keep}")
    importance = (cached_neuron_importance if cache else neuron_importance)(teacher, calibration)
    student = copy.deepcopy(teacher)
    for mlp, scores in zip(_mlps(student), importance, strict=True):
        kept = scores.topk(keep).indices.sort().values  # original order: nothing else to permute
        mlp.gate_proj = _slice_linear(mlp.gate_proj, kept, 0)
        mlp.up_proj = _slice_linear(mlp.up_proj, kept, 0)
        mlp.down_proj = _slice_linear(mlp.down_proj, kept, 1)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = keep
    student.config.intermediate_size = keep
    student.tie_weights()
    return student
