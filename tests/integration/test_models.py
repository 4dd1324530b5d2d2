"""Teacher loading, students (layer subset, random, pretrained), and the vocabulary check."""

from __future__ import annotations

import logging

import pytest
import torch

from adakd.models.loading import (
    ModelError,
    build_student,
    check_vocab,
    count_parameters,
    evenly_spaced_layers,
    load_model_pair,
    load_teacher,
    subset_student,
    tiny_random_llama,
)

V = 49_152


def llama_params(vocab, hidden, layers, kv_dim, mlp):
    """Hand count for a tied Llama: embedding + per layer (q, o: d·d; k, v: d·kv; gate, up,
    down: d·mlp; two RMSNorms: 2d) + final norm d."""
    return (
        vocab * hidden + layers * (2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * mlp + 2 * hidden) + hidden
    )


def test_parameter_counts_by_hand():
    assert llama_params(V, 576, 30, 192, 1536) == 134_515_008
    assert llama_params(V, 576, 6, 192, 1536) == 49_552_704
    assert llama_params(V, 256, 4, 256, 1024) == 16_779_520


@pytest.mark.parametrize(
    "n, k, expected",
    [
        (30, 6, [0, 6, 12, 18, 24, 29]),
        (12, 4, [0, 4, 8, 11]),
        (4, 4, [0, 1, 2, 3]),
        (30, 2, [0, 29]),
        (30, 1, [0]),
        (5, 3, [0, 2, 4]),
    ],
)
def test_evenly_spaced_layers(n, k, expected):
    assert evenly_spaced_layers(n, k) == expected


def test_evenly_spaced_layers_are_always_valid():
    for n in range(1, 40):
        for k in range(1, n + 1):
            idx = evenly_spaced_layers(n, k)
            assert len(idx) == k and idx[0] == 0 and idx == sorted(set(idx)) and idx[-1] == (n - 1 if k > 1 else 0)
    with pytest.raises(ValueError):
        evenly_spaced_layers(30, 31)
    with pytest.raises(ValueError):
        evenly_spaced_layers(30, 0)


# --------------------------------------------------------------------------- the real teacher


@pytest.mark.slow
def test_teacher_is_frozen_and_complete(real_teacher):
    model, tokenizer = real_teacher
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert count_parameters(model) == llama_params(V, 576, 30, 192, 1536)
    assert model.config.rope_parameters["rope_theta"] == 100_000.0
    assert len(tokenizer) == V and tokenizer.eos_token_id == 2 and tokenizer.bos_token_id == 1
    assert tokenizer.pad_token_id == 2


@pytest.mark.slow
def test_subset_student_copies_evenly_spaced_layers(real_teacher):
    teacher, _ = real_teacher
    student = build_student(teacher)
    assert student.config.num_hidden_layers == 6 and teacher.config.num_hidden_layers == 30
    assert student.training and all(p.requires_grad for p in student.parameters())
    assert count_parameters(student) == llama_params(V, 576, 6, 192, 1536)
    for j, i in enumerate([0, 6, 12, 18, 24, 29]):
        s_layer, t_layer = student.model.layers[j].state_dict(), teacher.model.layers[i].state_dict()
        assert s_layer.keys() == t_layer.keys()
        for name in s_layer:
            assert torch.equal(s_layer[name], t_layer[name]), (j, i, name)
    # a neighbour differs, so the comparison above can fail
    assert not torch.equal(student.model.layers[1].mlp.up_proj.weight, teacher.model.layers[5].mlp.up_proj.weight)
    assert torch.equal(student.model.embed_tokens.weight, teacher.model.embed_tokens.weight)
    assert torch.equal(student.model.norm.weight, teacher.model.norm.weight)
    assert student.lm_head.weight is student.model.embed_tokens.weight  # tied
    # own storage: training the student never moves the teacher
    with torch.no_grad():
        student.model.layers[0].mlp.up_proj.weight.add_(1.0)
    assert not torch.equal(student.model.layers[0].mlp.up_proj.weight, teacher.model.layers[0].mlp.up_proj.weight)
    logits = student(torch.tensor([[1, 4093, 198, 6004, 2]])).logits
    assert logits.shape == (1, 5, V) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_random_student_has_the_teachers_vocabulary(real_teacher):
    teacher, _ = real_teacher
    rng = torch.get_rng_state()
    student = build_student(teacher, "random", seed=3)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is left alone
    assert count_parameters(student) == llama_params(V, 256, 4, 256, 1024)
    assert student.config.eos_token_id == 2 and student.training
    again = build_student(teacher, "random", seed=3)
    other = build_student(teacher, "random", seed=4)
    w = student.model.layers[0].self_attn.q_proj.weight
    assert torch.equal(w, again.model.layers[0].self_attn.q_proj.weight)
    assert not torch.equal(w, other.model.layers[0].self_attn.q_proj.weight)
    assert student(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, V)


# --------------------------------------------------------------------------- tiny models


def test_subset_of_every_layer_reproduces_the_teacher():
    teacher = tiny_random_llama(300, layers=3, hidden=64, seed=0).eval()
    x = torch.tensor([[5, 17, 42, 7, 299]])
    with torch.no_grad():
        assert torch.equal(subset_student(teacher, [0, 1, 2]).eval()(x).logits, teacher(x).logits)
        assert not torch.equal(subset_student(teacher, [0, 2]).eval()(x).logits, teacher(x).logits)


@pytest.mark.parametrize("layers", [[2, 1], [0, 0], [0, 3], [], [-1, 1]])
def test_subset_rejects_bad_layer_lists(layers):
    teacher = tiny_random_llama(50, layers=3, hidden=32)
    with pytest.raises(ValueError, match="strictly increasing"):
        subset_student(teacher, layers)


def test_tiny_random_llama_is_seeded_and_validated():
    a, b = tiny_random_llama(100, seed=5), tiny_random_llama(100, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a.config.hidden_size == 64 and a.config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="multiple of 64"):
        tiny_random_llama(100, hidden=100)


def test_tiny_pair_runs_a_forward(tiny_pair):
    x = torch.tensor([[1, 4093, 198, 6004, 2], [1, 9690, 198, 2, 2]])
    with torch.no_grad():
        t = tiny_pair.teacher(x).logits
    s = tiny_pair.student(x).logits
    assert t.shape == s.shape == (2, 5, V)
    assert not tiny_pair.teacher.training and tiny_pair.student.training


def test_padded_teacher_is_trimmed_to_the_student(tokenizer):
    teacher = tiny_random_llama(V + 64, hidden=32, seed=1).eval()  # padded like Qwen's embedding
    student = tiny_random_llama(V, hidden=32, seed=2)
    x = torch.tensor([[1, 2, 3, 400]])
    with torch.no_grad():
        before = teacher(x).logits[..., :V]
    assert check_vocab(teacher, student, tokenizer) == V
    assert teacher.get_output_embeddings().weight.shape[0] == V == teacher.config.vocab_size
    with torch.no_grad():
        assert torch.equal(teacher(x).logits, before)
    # the other way round: a padded student is trimmed too
    student_big = tiny_random_llama(V + 8, hidden=32, seed=2)
    assert check_vocab(teacher, student_big, tokenizer) == V
    assert student_big.get_input_embeddings().weight.shape[0] == V


def test_vocabulary_mismatch_names_both_sizes(tokenizer):
    teacher = tiny_random_llama(V, hidden=32)
    student = tiny_random_llama(1000, hidden=32)
    with pytest.raises(ModelError) as err:
        check_vocab(teacher, student, tokenizer)
    assert "49152" in str(err.value) and "1000" in str(err.value)


def test_different_tokenizers_are_refused(tokenizer):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "a", "b", "c", "hello", "world", "the", "cat", "dog"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", eos_token="<eos>")
    model = tiny_random_llama(V, hidden=32)
    with pytest.raises(ModelError) as err:
        check_vocab(model, model, tokenizer, other)
    assert "49152" in str(err.value) and "10" in str(err.value)


def test_non_causal_model_is_refused_clearly(tmp_path):
    from transformers import DistilBertConfig

    DistilBertConfig(dim=16, n_layers=1, n_heads=2, hidden_dim=32).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="'distilbert' model without a causal language-model head"):
        load_teacher(str(tmp_path))


class _Records(logging.Handler):
    """Collects what reaches the transformers logger's handlers."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def transformers_records(monkeypatch):
    # CI=true makes transformers propagate its records to the root logger; both set-ups must
    # stay quiet about a rejected model, so the test pins neither and watches the handlers.
    library_logger = logging.getLogger("transformers")
    records = _Records()
    monkeypatch.setattr(library_logger, "handlers", [records])
    return records


def test_rejected_model_prints_only_our_error(tmp_path, transformers_records):
    from transformers import BertConfig, BertLMHeadModel

    # BertLMHeadModel warns "add `is_decoder=True`" on load; our error already says what to fix.
    # Seeded and with weights large enough that attending to the later token moves the earlier
    # logits well past check_causal's tolerance: with the default 0.02 initialisation some draws
    # of the global RNG (i.e. some test orders) gave a BERT whose logits barely moved.
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        initializer_range=0.5,
    )
    BertLMHeadModel(config).save_pretrained(tmp_path)
    transformers_records.messages.clear()
    with pytest.raises(ModelError, match="is not a causal language model"):
        load_teacher(str(tmp_path))
    assert transformers_records.messages == []


def test_accepted_model_keeps_transformers_warnings(transformers_records):
    from adakd.models.loading import _warnings_only_if_accepted

    with _warnings_only_if_accepted():
        logging.getLogger("transformers.modeling_utils").warning("some weights were not initialized")
        assert transformers_records.messages == []  # held until the model is accepted
    assert transformers_records.messages == ["some weights were not initialized"]


def test_pickle_weights_are_refused(tmp_path):
    model = tiny_random_llama(100, hidden=32)
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match="no .safetensors weights"):
        load_teacher(str(tmp_path))


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="cannot load teacher"):
        load_teacher(str(tmp_path / "nowhere"))


def test_load_model_pair_from_local_folders(tmp_path, tokenizer):
    ids = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    tiny_random_llama(V + 64, hidden=32, seed=1, **ids).save_pretrained(teacher_dir)
    tiny_random_llama(V, hidden=32, seed=2, **ids).save_pretrained(student_dir)
    for folder in (teacher_dir, student_dir):
        tokenizer.save_pretrained(folder)
    pair = load_model_pair(str(teacher_dir), str(student_dir))
    assert pair.teacher.get_output_embeddings().weight.shape[0] == V  # trimmed
    assert not pair.teacher.training and not any(p.requires_grad for p in pair.teacher.parameters())
    assert pair.student.training and all(p.requires_grad for p in pair.student.parameters())
    assert len(pair.tokenizer) == V
    random_pair = load_model_pair(str(teacher_dir), "random", random_layers=1, random_hidden=64, seed=0)
    assert random_pair.student.config.num_hidden_layers == 1
    # the random student mirrors the teacher's (padded) rows, so nothing needs trimming
    assert random_pair.student.get_input_embeddings().weight.shape[0] == V + 64
    assert random_pair.teacher.get_input_embeddings().weight.shape[0] == V + 64
    subset_pair = load_model_pair(str(teacher_dir), "subset", student_layers=[1])
    assert torch.equal(
        subset_pair.student.model.layers[0].mlp.up_proj.weight, subset_pair.teacher.model.layers[1].mlp.up_proj.weight
    )


@pytest.mark.parametrize("kind", ["gpt2", "qwen2"])
def test_subset_works_beyond_llama(kind):
    from transformers import AutoModelForCausalLM, GPT2Config, Qwen2Config

    if kind == "gpt2":
        config = GPT2Config(vocab_size=120, n_embd=32, n_layer=3, n_head=2, n_positions=64)
    else:
        config = Qwen2Config(
            vocab_size=120,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_config(config).eval()
    student = subset_student(teacher, [0, 2])
    layers = student.transformer.h if kind == "gpt2" else student.model.layers
    t_layers = teacher.transformer.h if kind == "gpt2" else teacher.model.layers
    assert len(layers) == 2 and student.config.num_hidden_layers == 2
    for j, i in enumerate([0, 2]):
        for (name, a), (_, b) in zip(layers[j].state_dict().items(), t_layers[i].state_dict().items(), strict=True):
            assert torch.equal(a, b), name
    assert student(torch.tensor([[3, 4, 5]])).logits.shape == (1, 3, 120)
