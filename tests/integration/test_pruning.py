"""The width-pruned student (adakd/models/pruning.py) and the held-out reference scores
(adakd/evaluation/reference_scores.py), checked against computations written out here."""

import torch
import torch.nn.functional as F

from adakd.data.instructions import Example
from adakd.data.tokenize import collate, encode_example, next_token_targets
from adakd.evaluation.protocol import EvalPrompt
from adakd.evaluation.reference_scores import reference_scores
from adakd.models.loading import tiny_random_llama
from adakd.models.pruning import neuron_importance, width_pruned_student

VOCAB = 300


def _teacher():
    return tiny_random_llama(VOCAB, layers=2, hidden=32, seed=3, initializer_range=0.2).eval().requires_grad_(False)


def _batch():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded row: its padding must not count in the importance
    return {"input_ids": ids, "attention_mask": mask}


def test_importance_is_the_summed_absolute_mlp_activation_over_attended_tokens():
    teacher, batch = _teacher(), _batch()
    importance = neuron_importance(teacher, batch)
    # by hand: the hidden state entering layer l's MLP, through its gate/up projections
    captured = []
    handles = [
        layer.post_attention_layernorm.register_forward_hook(lambda m, i, o: captured.append(o))
        for layer in teacher.model.layers
    ]
    with torch.no_grad():
        teacher(**batch, use_cache=False)
    for h in handles:
        h.remove()
    for layer, h, got in zip(teacher.model.layers, captured, importance, strict=True):
        mlp = layer.mlp
        x = F.silu(h @ mlp.gate_proj.weight.T) * (h @ mlp.up_proj.weight.T)  # [B, T, F]
        expected = x.abs()[batch["attention_mask"].bool()].sum(0)
        torch.testing.assert_close(got, expected)


def test_pruned_student_equals_the_teacher_with_the_dropped_neurons_silenced():
    teacher, batch = _teacher(), _batch()
    keep = 50  # of 128
    student = width_pruned_student(teacher, batch, keep)
    assert student.config.intermediate_size == keep
    assert all(layer.mlp.down_proj.in_features == keep for layer in student.model.layers)
    # reference: the teacher with the down_proj columns of the least important neurons zeroed
    silenced = tiny_random_llama(VOCAB, layers=2, hidden=32, seed=3, initializer_range=0.2).eval()
    for layer, scores in zip(silenced.model.layers, neuron_importance(teacher, batch), strict=True):
        dropped = scores.argsort(descending=True)[keep:]
        layer.mlp.down_proj.weight.data[:, dropped] = 0.0
    probe = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(student(input_ids=probe).logits, silenced(input_ids=probe).logits)
    # nothing shared with the teacher, and keeping everything changes nothing
    assert all(p.data_ptr() != q.data_ptr() for p in student.parameters() for q in teacher.parameters())
    full = width_pruned_student(teacher, batch, 128)
    with torch.no_grad():
        torch.testing.assert_close(full(input_ids=probe).logits, teacher(input_ids=probe).logits)


def test_pruned_student_rejects_impossible_widths():
    import pytest

    with pytest.raises(ValueError, match="student_mlp_keep must be in"):
        width_pruned_student(_teacher(), _batch(), 129)


def test_reference_scores_match_a_loop_over_references(tokenizer):
    teacher = tiny_random_llama(len(tokenizer), layers=1, hidden=32, seed=1).eval()
    student = tiny_random_llama(len(tokenizer), layers=1, hidden=32, seed=2).eval()
    prompts = [
        EvalPrompt("Name a fruit.", "", ("An apple, which is red.", "A pear.")),
        Example("Say hi.", "", "Hi there!", ""),
    ]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 2
    got = reference_scores(
        student, tokenizer, prompts, pad_id=pad, max_prompt_length=32, max_length=64, teacher=teacher, batch_size=2
    )
    nll, kl, n = 0.0, 0.0, 0
    for instruction, reply in [
        ("Name a fruit.", "An apple, which is red."),
        ("Name a fruit.", "A pear."),
        ("Say hi.", "Hi there!"),
    ]:
        enc = collate([encode_example(tokenizer, Example(instruction, "", reply), 32, 64)], pad)
        targets, mask = next_token_targets(enc["labels"])
        with torch.no_grad():
            logq = student(input_ids=enc["input_ids"]).logits[0, :-1].double().log_softmax(-1)
            logp = teacher(input_ids=enc["input_ids"]).logits[0, :-1].double().log_softmax(-1)
        for t in range(targets.shape[1]):
            if mask[0, t]:
                nll -= logq[t, targets[0, t]].item()
                kl += (logp[t].exp() * (logp[t] - logq[t])).sum().item()
                n += 1
    assert got["tokens"] == n
    assert abs(got["ce"] - nll / n) < 1e-4 and abs(got["kl_teacher"] - kl / n) < 1e-4
    alone = reference_scores(
        teacher, tokenizer, prompts, pad_id=pad, max_prompt_length=32, max_length=64, teacher=teacher
    )
    assert alone["kl_teacher"] is None


def test_cached_importance_is_computed_once_and_an_unreadable_entry_is_set_aside(tmp_path, monkeypatch):
    from adakd.models import pruning

    monkeypatch.setenv("ADAKD_CACHE", str(tmp_path))
    teacher, batch = _teacher(), _batch()
    expected = neuron_importance(teacher, batch)
    calls = []
    real = pruning.neuron_importance
    monkeypatch.setattr(pruning, "neuron_importance", lambda *a: calls.append(1) or real(*a))

    first = pruning.cached_neuron_importance(teacher, batch)
    again = pruning.cached_neuron_importance(teacher, batch)
    assert len(calls) == 1  # the second call read the stored result
    for a, b, c in zip(first, again, expected, strict=True):
        assert torch.equal(a, c) and torch.equal(b, c)
    (entry,) = (tmp_path / "pruning").glob("*.safetensors")

    other = dict(batch, attention_mask=batch["attention_mask"].clone())
    other["attention_mask"][0, 8] = 0  # another batch: another key, computed afresh
    pruning.cached_neuron_importance(teacher, other)
    assert len(calls) == 2 and len(list((tmp_path / "pruning").glob("*.safetensors"))) == 2

    entry.write_bytes(b"not a safetensors file")
    recomputed = pruning.cached_neuron_importance(teacher, batch)
    assert len(calls) == 3
    assert all(torch.equal(a, c) for a, c in zip(recomputed, expected, strict=True))
    assert (entry.parent / (entry.name + ".unreadable")).read_bytes() == b"not a safetensors file"
    # the pruned student built through the cache is the one built without it
    probe = torch.randint(3, VOCAB, (2, 7), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(
            width_pruned_student(teacher, batch, 50, cache=True)(input_ids=probe).logits,
            width_pruned_student(teacher, batch, 50)(input_ids=probe).logits,
        )
