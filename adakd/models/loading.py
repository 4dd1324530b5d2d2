"""Teacher and student models: the embedded default, layer-subset and random students, any HF pair.

    teacher, tokenizer = load_teacher()                  # SmolLM2-135M-Instruct, eval, no grad
    student = build_student(teacher)                     # 6 of its 30 layers: 0, 6, 12, 18, 24, 29
    pair = load_model_pair("gpt2-xl", "gpt2")            # any causal-LM pair sharing a vocabulary

Parameter counts (tied input/output embedding counted once; the embedding alone is
49,152 x 576 = 28,311,552 for the teacher and subset student):

    teacher  SmolLM2-135M-Instruct, 30 layers x 576     134,515,008
    student  "subset", 6 of 30 layers (default)          49,552,704
    student  "random", 4 layers x 256 (default)          16,779,520
    tiny_random_llama(49_152) (2 layers x 64, tests)      3,277,120

Only safetensors weights are loaded (``use_safetensors=True``): pickle-based ``.bin`` files can
run code when read. ``trust_remote_code`` is off unless the caller turns it on.
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from adakd.models.assets import DEFAULT_TEACHER_NAME, default_teacher_dir
from adakd.runs.failures import first_line

if TYPE_CHECKING:  # transformers is imported where a model is built (it takes seconds)
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

DEFAULT_SUBSET_LAYERS = 6


class ModelError(ValueError):
    """A model cannot be used for distillation here; the message says which one and why."""


@dataclass
class ModelPair:
    """A teacher (eval, frozen), a student (train mode) and the tokenizer they share."""

    teacher: nn.Module
    student: nn.Module
    tokenizer: object


def count_parameters(model: nn.Module) -> int:
    """Number of distinct parameters (a tied embedding/head counts once)."""
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- loading


def load_teacher(
    name_or_path: str = DEFAULT_TEACHER_NAME,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
):
    """Load a causal LM and its tokenizer as a frozen teacher: ``(model, tokenizer)``.

    ``"smollm2-135m-instruct"`` is the embedded default (converted once from the installed
    GGUF, see ``adakd.models.assets``); anything else is a Hugging Face id or a local folder.
    The model is in eval mode with ``requires_grad=False`` on every parameter.
    """
    source = default_teacher_dir() if name_or_path == DEFAULT_TEACHER_NAME else name_or_path
    model = _load_causal_lm(source, dtype, trust_remote_code, role="teacher")
    tokenizer = load_tokenizer(source, trust_remote_code)
    model.to(device).eval().requires_grad_(False)
    return model, tokenizer


def load_tokenizer(name_or_path, trust_remote_code: bool = False):
    """The model's tokenizer; a missing pad token falls back to eos (GPT-2 has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load the tokenizer of '{name_or_path}': {first_line(err)}") from err
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Padding positions are masked by attention_mask and labels, so which id fills them
        # does not matter; eos is the conventional choice.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_causal_lm(name_or_path, dtype, trust_remote_code: bool, role: str):
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoModelForCausalLM

    where = str(name_or_path)
    try:
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelError(
            f"cannot load {role} '{where}': {first_line(err)} Give a local model folder or a Hugging Face "
            "id that is already in the local cache (downloads are off when HF_HUB_OFFLINE=1)."
        ) from err
    remote_causal = "AutoModelForCausalLM" in (getattr(config, "auto_map", None) or {})
    if getattr(config, "is_encoder_decoder", False) or not (
        type(config) in MODEL_FOR_CAUSAL_LM_MAPPING or (trust_remote_code and remote_causal)
    ):
        raise ModelError(
            f"{role} '{where}' is a '{config.model_type}' model without a causal language-model "
            "head; AdaKD distils decoder-only causal LMs (e.g. Llama, Qwen2, GPT-2)."
        )
    with _warnings_only_if_accepted():
        model = _from_pretrained(AutoModelForCausalLM, where, dtype, trust_remote_code, role)
        check_causal(model, f"{role} '{where}'")
    return model


def _from_pretrained(auto_class, where: str, dtype, trust_remote_code: bool, role: str):
    try:
        return auto_class.from_pretrained(where, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
    except OSError as err:
        folder = Path(where)
        if folder.is_dir() and not any(folder.glob("*.safetensors")):
            raise ModelError(
                f"{role} folder '{where}' has no .safetensors weights. Only safetensors are "
                "loaded (pickle-based .bin files can run code); re-save the model with "
                "model.save_pretrained(folder) to get model.safetensors."
            ) from err
        raise ModelError(f"cannot load {role} weights from '{where}': {first_line(err)}") from err


@contextmanager
def _warnings_only_if_accepted() -> Iterator[None]:
    """Hold transformers' log records while a model loads; pass them on only if it is accepted.

    A rejected model (e.g. BERT's "add `is_decoder=True`" warning) would otherwise print
    transformers' advice above our own error, which already says what to fix.
    """
    library_logger = logging.getLogger("transformers")
    holder = logging.handlers.BufferingHandler(capacity=sys.maxsize)  # keeps every record in .buffer
    saved = library_logger.handlers[:], library_logger.propagate
    library_logger.handlers, library_logger.propagate = [holder], False
    accepted = False
    try:
        yield
        accepted = True
    finally:
        library_logger.handlers, library_logger.propagate = saved
        for record in holder.buffer if accepted else ():
            library_logger.handle(record)


@torch.no_grad()
def check_causal(model: PreTrainedModel, name: str = "model") -> None:
    """Raise ModelError when the logits at position t depend on later tokens.

    An encoder such as BERT has a causal-LM class in transformers (``BertLMHeadModel``) but
    attends both ways unless configured as a decoder; its "next-token" distributions would see
    the answer. Two 4-token inputs that differ only in the last token must give the same logits
    at the first three positions.
    """
    vocab = _weight_rows(model.get_input_embeddings())
    if vocab < 3:
        return
    device = next(model.parameters()).device
    a = torch.tensor([[0, 1, 2, 1]], device=device)
    b = torch.tensor([[0, 1, 2, 2]], device=device)
    was_training = model.training
    model.eval()
    try:
        first, second = model(input_ids=a).logits[0, :3], model(input_ids=b).logits[0, :3]
    finally:
        model.train(was_training)
    if not torch.allclose(first.float(), second.float(), rtol=1e-3, atol=1e-4):
        raise ModelError(
            f"{name} is not a causal language model: its prediction at a position changes with "
            f"later tokens ({type(model).__name__}, e.g. an encoder like BERT). AdaKD distils "
            "decoder-only causal LMs (e.g. Llama, Qwen2, GPT-2)."
        )


# --------------------------------------------------------------------------- students


def build_student(
    teacher: PreTrainedModel,
    spec: str = "subset",
    layers: list[int] | None = None,
    random_layers: int = 4,
    random_hidden: int = 256,
    seed: int = 0,
    device=None,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """A trainable student (train mode, gradients on), on the teacher's device/dtype by default.

    spec ``"subset"``: the teacher with only ``layers`` kept (default: 6 evenly spaced, see
    ``evenly_spaced_layers``), embeddings, final norm and head copied; ``"random"``: a fresh
    Llama of ``random_layers`` x ``random_hidden`` with the teacher's vocabulary, seeded by
    ``seed``; anything else: a Hugging Face id or local path.
    """
    reference = next(teacher.parameters())
    device = reference.device if device is None else device
    dtype = reference.dtype if dtype is None else dtype
    if spec == "subset":
        n = _num_layers(teacher)
        chosen = layers if layers is not None else evenly_spaced_layers(n, min(DEFAULT_SUBSET_LAYERS, n))
        student = subset_student(teacher, chosen)
    elif spec == "random":
        cfg = teacher.config
        student = tiny_random_llama(
            _weight_rows(teacher.get_input_embeddings()),
            layers=random_layers,
            hidden=random_hidden,
            seed=seed,
            bos_token_id=cfg.bos_token_id,
            eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
            max_position_embeddings=getattr(cfg, "max_position_embeddings", 2048),
        )
    else:
        student = _load_causal_lm(spec, dtype, trust_remote_code, role="student")
    # transformers declares PreTrainedModel.to with @wraps(nn.Module.to), which mypy reads as unbound
    return student.to(device=device, dtype=dtype).train().requires_grad_(True)  # type: ignore[call-arg]


def evenly_spaced_layers(num_layers: int, k: int) -> list[int]:
    """k layer indices at stride L/(k−1) over [0, L], the last clamped to the final layer L−1.

    idx_i = min(floor(i·L/(k−1)), L−1), i = 0..k−1. For L = 30, k = 6: 0, 6, 12, 18, 24, 29.
    Always starts at 0, ends at L−1 and is strictly increasing (the stride L/(k−1) > 1 for
    k ≤ L); k = L gives every layer, k = 1 gives [0].
    """
    if not 1 <= k <= num_layers:
        raise ValueError(f"cannot pick {k} of {num_layers} layers: need 1 <= k <= {num_layers}")
    if k == 1:
        return [0]
    return [min(i * num_layers // (k - 1), num_layers - 1) for i in range(k)]


def subset_student(teacher: PreTrainedModel, layers: list[int]) -> PreTrainedModel:
    """A copy of the teacher keeping only decoder layers ``layers`` (strictly increasing).

    Student layer j is teacher layer ``layers[j]``; every other weight (embeddings, final norm,
    head) is copied. The copy shares no storage with the teacher.
    """
    n = _num_layers(teacher)
    if (
        not layers
        or any(not isinstance(i, int) or not 0 <= i < n for i in layers)
        or list(layers) != sorted(set(layers))
    ):
        raise ValueError(f"student layers must be strictly increasing integers in [0, {n}), got {layers}")
    prefix = _layer_list_name(teacher)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layers)
    if isinstance(getattr(config, "layer_types", None), list):  # per-layer attention kinds (Qwen2, ...)
        config.layer_types = [config.layer_types[i] for i in layers]
    student_of_teacher = {t: s for s, t in enumerate(layers)}
    state = {}
    for key, tensor in teacher.state_dict().items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1 :].split(".", 1)
            if int(index) not in student_of_teacher:
                continue
            key = f"{prefix}.{student_of_teacher[int(index)]}.{rest}"
        state[key] = tensor
    with _skip_weight_init():  # every weight is overwritten below; random init would waste ~1 s
        student = type(teacher)(config)
    student.load_state_dict(state, strict=True)  # copies into the student's own tensors
    student.tie_weights()
    return student


def tiny_random_llama(vocab_size: int, layers: int = 2, hidden: int = 64, seed: int = 0, **config_overrides):
    """A randomly initialised ``LlamaForCausalLM`` (tied head), deterministic in ``seed``.

    Heads of size 64 (one head of size ``hidden`` below 64), as many KV heads as heads,
    MLP width 4·hidden. ``config_overrides`` go to ``LlamaConfig`` (e.g. token ids).
    The global RNG is left untouched.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = max(1, hidden // 64)
    if hidden <= 0 or hidden % 2 or (hidden > 64 and hidden % 64):
        raise ValueError(f"hidden size {hidden} must be a multiple of 64, or an even number below 64")
    if layers < 1 or vocab_size < 1:
        raise ValueError(f"need layers >= 1 and vocab_size >= 1, got {layers} and {vocab_size}")
    settings: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        head_dim=hidden // heads,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    )
    settings.update(config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(LlamaConfig(**settings))


# --------------------------------------------------------------------------- pairs


def load_model_pair(
    teacher: str,
    student: str,
    student_layers: list[int] | None = None,
    random_layers: int = 4,
    random_hidden: int = 256,
    device="cpu",
    dtype: torch.dtype = torch.float32,
    trust_remote_code: bool = False,
    seed: int = 0,
) -> ModelPair:
    """Load the teacher, build or load the student, and check that they share a vocabulary."""
    teacher_model, tokenizer = load_teacher(teacher, device, dtype, trust_remote_code)
    student_model = build_student(
        teacher_model,
        student,
        layers=student_layers,
        random_layers=random_layers,
        random_hidden=random_hidden,
        seed=seed,
        device=device,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
    )
    student_tokenizer = None if student in ("subset", "random") else load_tokenizer(student, trust_remote_code)
    check_vocab(teacher_model, student_model, tokenizer, student_tokenizer)
    return ModelPair(teacher_model, student_model, tokenizer)


def check_vocab(teacher: PreTrainedModel, student: PreTrainedModel, tokenizer, student_tokenizer=None) -> int:
    """Make teacher and student logits index the same tokens; return the shared size V.

    Token-level KD compares p_T(v) with p_S(v) for every v, so both must use one tokenizer.
    Embedding matrices are often padded beyond the tokenizer (e.g. Qwen: 151,936 rows for
    151,665 tokens); when the rows differ but both cover the tokenizer, the larger model is
    trimmed to the smaller (the padded rows are never produced by the tokenizer). Anything
    else raises ModelError naming both sizes.
    """
    tokens = len(tokenizer)
    if student_tokenizer is not None and student_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise ModelError(
            f"teacher and student use different tokenizers: the teacher's has {tokens} tokens, "
            f"the student's {len(student_tokenizer)}. AdaKD compares the two next-token "
            "distributions token by token, so both models must share one vocabulary."
        )
    rows_t, rows_s = _vocab_rows(teacher), _vocab_rows(student)
    if min(rows_t, rows_s) < tokens:
        raise ModelError(
            f"vocabulary size mismatch: the teacher has {rows_t} output rows, the student "
            f"{rows_s}, and the tokenizer {tokens} tokens; both models need at least {tokens}."
        )
    if rows_t != rows_s:
        larger, name = (teacher, "teacher") if rows_t > rows_s else (student, "student")
        logger.info(
            "trimming the %s's padded vocabulary from %d to %d rows", name, max(rows_t, rows_s), min(rows_t, rows_s)
        )
        larger.resize_token_embeddings(min(rows_t, rows_s))
    return min(rows_t, rows_s)


# --------------------------------------------------------------------------- helpers


def _vocab_rows(model: PreTrainedModel) -> int:
    head = model.get_output_embeddings()
    return _weight_rows(head if head is not None else model.get_input_embeddings())


def _weight_rows(module: nn.Module) -> int:
    """Rows of an embedding or LM head's weight ([V, H] for both): the token ids it covers."""
    weight = module.weight
    if not isinstance(weight, torch.Tensor):
        raise ModelError(f"{type(module).__name__} has no weight matrix: cannot tell its vocabulary size")
    return weight.shape[0]


def _num_layers(model: PreTrainedModel) -> int:
    return model.config.get_text_config().num_hidden_layers


def _layer_list_name(model: PreTrainedModel) -> str:
    """Dotted name of the ModuleList holding the decoder layers (``model.layers``, ``transformer.h``)."""
    n = _num_layers(model)
    names = [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n]
    if len(names) != 1:
        raise ModelError(
            f"cannot find the decoder layer list of {type(model).__name__} (ModuleLists with "
            f"{n} entries: {names or 'none'}); use student 'random' or a pretrained student instead."
        )
    return names[0]


def _skip_weight_init():
    from transformers.initialization import no_init_weights

    return no_init_weights()
