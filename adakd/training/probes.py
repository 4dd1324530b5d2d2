"""Probes: the per-token and per-group measurements behind the paper's figures.

Two pure functions (models + batch in, tidy DataFrame out), called by the trainer every
``probe_interval`` steps and at step 0:

- :func:`probe_tokens` -> rows of ``tokens.parquet`` (Fig. 1 top, Fig. 4, the token explorer);
- :func:`probe_gradient_groups` -> rows of ``gradients.parquet`` (Fig. 1 bottom).

Column names and meanings are fixed by ``docs/contracts.md``; the definitions are
``docs/method.md`` §5. Both functions leave the models' train/eval modes (of every submodule), the
parameters' ``.grad`` and the torch RNG states exactly as they found them, so a run with probes
is bit-identical to one without.

Groups (both functions, one rule): with ``N`` valid tokens and ratio ``r``, the selected set is
``adakd.select_tokens(difficulty, r)`` (the top ``k = max(1, floor(r·N))`` by Hellinger
difficulty). Its ``k // 2`` most difficult tokens are **hard**, the other ``k − k // 2``
selected tokens are **mid** (the group sizes of the paper's public release), the ``N − k``
unselected tokens are **easy** ("top r/2, next r/2, rest"; 25/25/50 at r = 0.5; at r = 1 there
is no easy group; a single selected token is mid).
Ties inside the selected set are broken by position (stable sort), so groups are deterministic.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from adakd.data.tokenize import next_token_targets
from adakd.method.difficulty import hellinger
from adakd.method.divergences import divergence as base_divergence
from adakd.method.idts import idts_temperatures
from adakd.method.latf import select_tokens
from adakd.runs.columns import GRADIENT_COLUMNS, PANDAS_DTYPES, TOKEN_COLUMNS

GROUPS = ("hard", "mid", "easy")
PAPER_RATIO = 0.5  # the paper's fixed split for Fig. 1 (25/25/50), comparable across runs
_ROW_CHUNK = 256  # rows of [N, V] processed at once by the per-token statistics
# Model classes whose forward refused a boolean [B, T] ``logits_to_keep`` mask (transformers
# before the mask form — e.g. 5.17 — index ``hidden_states[:, keep, :]`` and raise IndexError;
# remote code may not take the argument at all, TypeError). Filled on the first refusal whose
# full-logits retry succeeds; those classes get full logits from then on, without the retry.
_FULL_LOGITS_ONLY: set[type] = set()

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- shared helpers
@contextlib.contextmanager
def untouched(*models: torch.nn.Module) -> Iterator[None]:
    """Run a block with the models in eval mode and no RNG side effects.

    Restores on exit: the ``training`` flag of every submodule (not just the top one, so a
    partially frozen model comes back exactly as it was) and the CPU RNG plus the RNG of every
    CUDA device the models live on.
    """
    flags = [(m, m.training) for model in models for m in model.modules()]
    cuda_devices = sorted(
        {p.device.index or 0 for model in models for p in model.parameters() if p.device.type == "cuda"}
    )
    try:
        with torch.random.fork_rng(devices=cuda_devices):
            for model in models:
                model.eval()
            yield
    finally:
        for module, flag in flags:
            module.training = flag


def group_labels(difficulty: torch.Tensor, ratio: float) -> tuple[torch.Tensor, np.ndarray]:
    """Selection mask and hard/mid/easy label per token (see the module docstring).

    difficulty: [N]. Returns (selected [N] bool tensor, labels [N] numpy array of str).
    """
    n = difficulty.numel()
    labels = np.full(n, "easy", dtype=object)
    if n == 0:
        return torch.zeros(0, dtype=torch.bool, device=difficulty.device), labels
    selected = select_tokens(difficulty, ratio)
    chosen = torch.nonzero(selected, as_tuple=False).flatten()
    order = torch.argsort(difficulty[chosen], descending=True, stable=True)
    n_hard = chosen.numel() // 2  # the release's split: hard = k // 2
    ranked = chosen[order].cpu().numpy()
    labels[ranked[:n_hard]] = "hard"
    labels[ranked[n_hard:]] = "mid"
    return selected, labels


def _forward_valid(model: torch.nn.Module, batch: Mapping[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """Float32 logits of the valid next-token positions: [N, V] in row-major order of mask.

    mask: [B, T-1] from next_token_targets. The head runs on those positions only
    (``logits_to_keep`` with a boolean [B, T] mask): on instruction data most positions are
    prompt, and the vocabulary projection is a large share of a forward pass. A model that
    refuses the mask (TypeError / IndexError, see ``_FULL_LOGITS_ONLY``) or answers with an
    unexpected shape gets a plain forward, and logits[:, :-1][mask] is taken from the full
    [B, T, V]; the same rows either way. A refusal is remembered per model class only once the
    plain forward has worked, so an IndexError with another cause (a token id outside the
    vocabulary) is raised by that forward and remembers nothing.
    """
    device = next(model.parameters()).device
    inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device)}
    mask = mask.to(device)
    refused: Exception | None = None
    if type(model) not in _FULL_LOGITS_ONLY:
        try:
            kept = _kept_rows(model(**inputs, logits_to_keep=F.pad(mask, (0, 1), value=False)).logits, mask)
        except (TypeError, IndexError) as err:
            kept, refused = None, err
        if kept is not None:
            return kept.float()
        refused = refused or ValueError("logits of an unexpected shape for a boolean logits_to_keep")
    logits = model(**inputs).logits  # raises again when the refusal had another cause
    if refused is not None:
        _FULL_LOGITS_ONLY.add(type(model))
        log.info(
            "%s does not take a boolean logits_to_keep mask (%s: %s); probes compute its full logits",
            type(model).__name__,
            type(refused).__name__,
            refused,
        )
    kept = _kept_rows(logits, mask)
    if kept is None:
        raise ValueError(
            f"{type(model).__name__} returned logits of shape {tuple(logits.shape)} for a batch of "
            f"shape {tuple(inputs['input_ids'].shape)}; expected [B, T, V]"
        )
    return kept.float()


def _kept_rows(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor | None:
    """[N, V] rows of the valid positions from what the model returned: already [N, V] (the
    mask was applied), or the full [B, T, V] (logits_to_keep ignored); None for any other shape."""
    n = int(mask.sum())
    if logits.dim() == 2 and logits.shape[0] == n:
        return logits
    if logits.dim() == 3 and logits.shape[:2] == (mask.shape[0], mask.shape[1] + 1):
        return logits[:, :-1][mask]
    return None


def valid_logits(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """A model's float32 logits [N, V] of the batch's valid next-token positions.

    Row i scores ``targets[mask][i]`` of ``next_token_targets(batch["labels"])`` (row-major
    order of the mask). Computed under no_grad in eval mode, with the model's train/eval modes
    and the RNG states left as they were (``untouched``); the head runs on the valid positions
    only where the model allows it (``_forward_valid``).
    """
    _check_batch(batch)
    _, mask = next_token_targets(batch["labels"])
    with untouched(model), torch.no_grad():
        return _forward_valid(model, batch, mask)


def teacher_valid_logits(teacher: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The teacher's float32 logits [N, V] of the batch's valid tokens, for reuse.

    The teacher is frozen, so its logits on a fixed probe or gradient batch never change over a
    run: compute them once with this function and pass them as ``teacher_logits=`` to
    :func:`probe_tokens` / :func:`probe_gradient_groups` to skip the teacher forward at every
    probe (most of a probe's cost). Memory: N·V·4 bytes (demo: ~200 tokens × 49,152 ≈ 40 MB).
    """
    return valid_logits(teacher, batch)


def _check_batch(batch: Mapping[str, torch.Tensor]) -> None:
    for key in ("input_ids", "attention_mask", "labels"):
        if key not in batch:
            raise ValueError(f"batch is missing {key!r}; pass the dict returned by adakd.data.tokenize.collate")


def _valid_logits(student, teacher, batch: Mapping[str, torch.Tensor], teacher_logits: torch.Tensor | None):
    """(student [N,V], teacher [N,V] on the student's device, targets [N], mask [B,T-1]);
    None when the batch has no valid token."""
    _check_batch(batch)
    targets, mask = next_token_targets(batch["labels"])
    n = int(mask.sum())
    if n == 0:
        return None
    with torch.no_grad():
        s = _forward_valid(student, batch, mask)
        t = _forward_valid(teacher, batch, mask) if teacher_logits is None else teacher_logits.float()
    t = t.to(s.device)
    if t.shape[0] != n:
        raise ValueError(
            f"teacher_logits has {t.shape[0]} rows but the batch has {n} valid tokens: "
            "compute them with teacher_valid_logits(teacher, batch) on this same batch"
        )
    if s.shape[-1] != t.shape[-1]:
        raise ValueError(
            f"student vocabulary ({s.shape[-1]}) and teacher vocabulary ({t.shape[-1]}) "
            "differ; load the pair with adakd.models.loading.load_model_pair, which checks them"
        )
    return s, t, targets[mask].to(s.device), mask


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(softmax(z)) in nats, [N, V] -> [N]; entr(0) = 0 so masked (−inf) entries are safe."""
    return torch.special.entr(torch.softmax(logits, dim=-1)).sum(-1)


def _label_prob(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1).exp()


def _decode_each(tokenizer, ids: np.ndarray) -> np.ndarray:
    """Readable text of each single token id: ``tokenizer.decode([id])`` (special tokens kept)."""
    unique = np.unique(ids)
    texts = {
        int(i): tokenizer.decode([int(i)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        for i in unique
    }
    return np.array([texts[int(i)] for i in ids], dtype=object)


def _frame(columns: dict[str, str], data: dict) -> pd.DataFrame:
    return pd.DataFrame(
        {name: pd.Series(data.get(name, []), dtype=PANDAS_DTYPES[kind]) for name, kind in columns.items()}
    )


# --------------------------------------------------------------------------- tokens.parquet
def probe_tokens(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    tokenizer,
    *,
    step: int,
    ratio: float,
    c: float,
    base_temperature: float,
    inverse: bool = False,
    teacher_logits: torch.Tensor | None = None,
) -> pd.DataFrame:
    """One ``tokens.parquet`` row per valid response token of the probe batch.

    batch: ``collate()`` output for the **whole** fixed probe set (input_ids, attention_mask,
    unshifted labels, all [B, T]); row ``b`` is probe example ``b``. Valid tokens are those of
    ``next_token_targets(labels)``: logits at position t score the token at position t + 1, so
    ``position`` is t + 1 (index in the full sequence) and ``token_index`` its 0-based index
    within the response.

    Per valid token i (all at τ = 1 unless stated, float32):
      difficulty s_i = Hellinger(softmax z_S, softmax z_T);
      selected / group: top k = max(1, floor(r·N)) pooled over the probe tokens, groups as in
      the module docstring;
      tau   = IDTS over the selected tokens only (median of the selected), NaN when unselected;
      tau_all = IDTS with the median of all probe tokens (Fig. 4);
      hard  = s_i > median(all s) (the lower median, as in IDTS, so hard ⇔ tau_all < τ_base
              when c > 0);
      entropy_student = H(softmax z_S), entropy_student_idts = H(softmax(z_S / tau_all)),
      entropy_student_tau = H(softmax(z_S / tau)) on selected tokens, NaN elsewhere (Fig. 4 as
      the paper defines it: the temperatures the selected tokens are trained at),
      entropy_teacher = H(softmax z_T) (nats);
      p_label_* = softmax(z)[label]; top1_* = decoded argmax token.

    ``inverse=True`` gives the inverse-IDTS ablation τ = τ_base·exp(+c·ŝ); for a run with
    IDTS off pass ``c=0`` (τ = τ_base everywhere, as the run trains).
    ``teacher_logits``: optional precomputed ``teacher_valid_logits(teacher, batch)``.
    Returns a DataFrame with exactly the contract columns and dtypes (empty when no token is valid).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    with untouched(student, teacher), torch.no_grad():
        valid = _valid_logits(student, teacher, batch, teacher_logits)
        if valid is None:
            return _frame(TOKEN_COLUMNS, {})
        s_logits, t_logits, targets, mask = valid
        n = targets.numel()
        difficulty = hellinger(s_logits, t_logits).float()
        selected, groups = group_labels(difficulty, ratio)
        tau = torch.full((n,), float("nan"), device=difficulty.device)
        tau[selected] = idts_temperatures(difficulty[selected], base_temperature, c, inverse).float()
        tau_all = idts_temperatures(difficulty, base_temperature, c, inverse).float()
        hard = difficulty > difficulty.median()

        chunks: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("h_s", "h_si", "h_sel", "h_t", "p_t", "p_s", "top_t", "top_s")
        }
        tau_or_one = torch.nan_to_num(tau, nan=1.0)  # unselected rows: any τ, the result is masked
        for lo in range(0, n, _ROW_CHUNK):
            s, t, y = s_logits[lo : lo + _ROW_CHUNK], t_logits[lo : lo + _ROW_CHUNK], targets[lo : lo + _ROW_CHUNK]
            chunks["h_s"].append(_entropy(s))
            chunks["h_si"].append(_entropy(s / tau_all[lo : lo + _ROW_CHUNK, None]))
            chunks["h_sel"].append(_entropy(s / tau_or_one[lo : lo + _ROW_CHUNK, None]))
            chunks["h_t"].append(_entropy(t))
            chunks["p_s"].append(_label_prob(s, y))
            chunks["p_t"].append(_label_prob(t, y))
            chunks["top_s"].append(s.argmax(-1))
            chunks["top_t"].append(t.argmax(-1))
        stats = {k: torch.cat(v).cpu().numpy() for k, v in chunks.items()}
        stats["h_sel"][~selected.cpu().numpy()] = np.nan

    mask_cpu = mask.cpu()
    rows, cols = torch.nonzero(mask_cpu, as_tuple=True)
    token_index = (mask_cpu.long().cumsum(dim=1) - 1)[rows, cols]
    token_ids = targets.cpu().numpy()
    return _frame(
        TOKEN_COLUMNS,
        {
            "step": np.full(n, step),
            "example": rows.numpy(),
            "position": (cols + 1).numpy(),
            "token_index": token_index.numpy(),
            "token_id": token_ids,
            "token_text": _decode_each(tokenizer, token_ids),
            "difficulty": difficulty.cpu().numpy(),
            "selected": selected.cpu().numpy(),
            "group": groups,
            "tau": tau.cpu().numpy(),
            "tau_all": tau_all.cpu().numpy(),
            "hard": hard.cpu().numpy(),
            "entropy_student": stats["h_s"],
            "entropy_student_idts": stats["h_si"],
            "entropy_student_tau": stats["h_sel"],
            "entropy_teacher": stats["h_t"],
            "p_label_teacher": stats["p_t"],
            "p_label_student": stats["p_s"],
            "top1_teacher": _decode_each(tokenizer, stats["top_t"]),
            "top1_student": _decode_each(tokenizer, stats["top_s"]),
            "ratio": np.full(n, float(ratio)),
        },
    )


# --------------------------------------------------------------------------- gradients.parquet
def _row_statistics(
    z: torch.Tensor, divergence_per_token: torch.Tensor, ce_per_token: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token gradient rows reduced to (‖D_i‖², ‖C_i‖², ⟨D_i, C_i⟩), each [N] float64.

    D_i = ∂D_i/∂z_i and C_i = ∂CE_i/∂z_i: because each per-token loss depends on its own row
    z_i only, one backward of Σ_i ℓ_i gives every row at once, and ∇_z mean_{i∈G} ℓ_i is the
    matrix with rows ℓ-gradient_i/|G| for i ∈ G and 0 elsewhere — for every group G. So all
    norms and inner products of the group gradients are sums of these per-row numbers.
    """
    (d_rows,) = torch.autograd.grad(divergence_per_token.sum(), z)
    (c_rows,) = torch.autograd.grad(ce_per_token.sum(), z)
    # float32 row sums over V (relative error ~1e-7), float64 from here on
    return ((d_rows * d_rows).sum(-1).double(), (c_rows * c_rows).sum(-1).double(), (d_rows * c_rows).sum(-1).double())


def _group_rows(
    step: int, split: str, ratio: float, groups: np.ndarray, stats: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
) -> dict[str, list]:
    """Rows of one split from the per-row statistics of ``_row_statistics``.

    With g_d(G) = D_G/|G|, g_s(G) = C_G/|G|, g_full = D/N (Frobenius inner products over [N, V]):
      cos_sft    = ⟨g_d(G), g_s(G)⟩ / (‖g_d(G)‖‖g_s(G)‖) = Σ_G⟨D_i,C_i⟩ / sqrt(Σ_G‖D_i‖² Σ_G‖C_i‖²)
      cos_total  = ⟨g_d(G), g_full⟩ / (‖g_d(G)‖‖g_full‖)  (= ‖D_G‖/‖D‖ ≥ 0: disjoint supports)
      grad_norm  = ‖g_d(G)‖ = sqrt(Σ_G‖D_i‖²)/|G|,  norm_share = 100·‖g_d(G)‖ / Σ_G' ‖g_d(G')‖.
    A zero gradient (e.g. student identical to teacher) gives NaN cosines/shares.
    """
    d_sq, c_sq, dc = stats
    n = d_sq.numel()
    full_norm = d_sq.sum().sqrt() / n  # ‖g_full‖
    out: dict[str, list] = {k: [] for k in GRADIENT_COLUMNS}
    for name in GROUPS:
        idx = torch.from_numpy(np.flatnonzero(groups == name)).to(d_sq.device)
        if idx.numel() == 0:
            continue
        size = idx.numel()
        g_norm = d_sq[idx].sum().sqrt() / size
        s_norm = c_sq[idx].sum().sqrt() / size
        cos_sft = (dc[idx].sum() / size**2) / (g_norm * s_norm)
        cos_total = (d_sq[idx].sum() / (size * n)) / (g_norm * full_norm)
        for key, value in (
            ("step", step),
            ("split", split),
            ("ratio", ratio),
            ("group", name),
            ("n_tokens", size),
            ("cos_sft", cos_sft.item()),
            ("cos_total", cos_total.item()),
            ("grad_norm", g_norm.item()),
        ):
            out[key].append(value)
    total = sum(out["grad_norm"])
    out["norm_share"] = [100.0 * g / total if total > 0 else float("nan") for g in out["grad_norm"]]
    return out


def probe_gradient_groups(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    step: int,
    ratio: float,
    divergence: str,
    divergence_params: dict | None = None,
    teacher_logits: torch.Tensor | None = None,
) -> pd.DataFrame:
    """``gradients.parquet`` rows (Fig. 1 bottom) for one batch: both splits, one row per group.

    Gradients are taken with respect to the student **logits** of the valid tokens, z [N, V]
    (a fresh leaf made from a no-grad forward; no parameter gradient is computed or touched):
      g_d(G) = ∇_z mean_{i∈G} D_i(z)   (base divergence at τ = 1, ``adakd.divergence``)
      g_s(G) = ∇_z mean_{i∈G} CE_i(z)  (cross-entropy against the labels, the "SFT gradient")
      g_full = ∇_z mean_{i}   D_i(z)   (all valid tokens)
    Groups G (hard/mid/easy by Hellinger difficulty) as in the module docstring, at
    split "current" (r = ``ratio``) and split "paper" (r = 0.5: 25/25/50). Empty groups
    (r = 1 has no easy tokens) give no row. Columns: see ``GRADIENT_COLUMNS`` / contracts.md.
    ``teacher_logits``: optional precomputed ``teacher_valid_logits(teacher, batch)``.
    Cost: two backward passes over [N, V] (per-token losses separate by row, so every group
    gradient is a masked, rescaled copy of the same per-row gradients).
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    params = dict(divergence_params or {})
    with untouched(student, teacher):
        valid = _valid_logits(student, teacher, batch, teacher_logits)
        if valid is None:
            return _frame(GRADIENT_COLUMNS, {})
        s_logits, t_logits, targets, _ = valid
        difficulty = hellinger(s_logits, t_logits)
        with torch.enable_grad():
            z = s_logits.detach().clone().requires_grad_(True)
            stats = _row_statistics(
                z,
                base_divergence(divergence, z, t_logits, 1.0, **params),
                F.cross_entropy(z, targets, reduction="none"),
            )
        parts = []
        for split, r in (("current", float(ratio)), ("paper", PAPER_RATIO)):
            _, groups = group_labels(difficulty, r)
            parts.append(_group_rows(step, split, r, groups, stats))
    data = {k: [v for part in parts for v in part[k]] for k in GRADIENT_COLUMNS}
    return _frame(GRADIENT_COLUMNS, data)
