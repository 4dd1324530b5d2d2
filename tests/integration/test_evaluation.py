"""Evaluation: ROUGE-L against hand-computed values, generation (reproducible, RNG-neutral,
left padding + KV cache equal to a plain greedy loop, stopping), eval.jsonl records, and
`evaluate_run` on a real smoke run."""

from __future__ import annotations

import json

import pytest
import torch
from rouge_score import rouge_scorer

from adakd.data.instructions import Example
from adakd.data.tokenize import encode_prompt
from adakd.evaluation.evaluate import (
    evaluate_model,
    evaluate_run,
    generate_for_seeds,
    generate_responses,
    rouge_l,
    stop_token_ids,
)

PROMPTS = [
    Example("What is the capital of France?", "", "Paris", "qa"),
    Example("Write one short sentence about the sea and the sky at dawn.", "", "The sea is calm.", "gen"),
    Example("Hi", "", "The capital is Paris", "chat"),
]


# ---------------------------------------------------------------------- ROUGE-L
def test_rouge_l_identical_text_is_100():
    assert rouge_l("The quick brown fox jumps.", ["The quick brown fox jumps."]) == pytest.approx(100.0)


def test_rouge_l_hand_computed_lcs():
    # tokens: [the cat sat on the mat] vs [the cat is on the mat]: LCS "the cat on the mat" = 5
    # P = 5/6, R = 5/6 -> F = 5/6
    assert rouge_l("the cat sat on the mat", ["the cat is on the mat"]) == pytest.approx(100 * 5 / 6)
    # Porter stemming: "running dogs" -> [run, dog]; "The dog runs" -> [the, dog, run]
    # LCS = 1, P = 1/2, R = 1/3, F = 2PR/(P+R) = 0.4; without stemming there is no overlap at all
    assert rouge_l("running dogs", ["The dog runs"]) == pytest.approx(40.0)
    # case and punctuation are ignored; unequal lengths: P = 2/2, R = 2/4 -> F = 2/3
    assert rouge_l("Hello, World!", ["hello big wide world"]) == pytest.approx(100 * 2 / 3)


def test_rouge_l_is_max_over_references_and_zero_for_empty():
    assert rouge_l("the cat sat on the mat", ["dogs bark", "the cat is on the mat"]) == pytest.approx(100 * 5 / 6)
    assert rouge_l("", ["anything at all"]) == 0.0
    assert rouge_l("the cat", "the cat") == pytest.approx(100.0)  # a single string is one reference
    with pytest.raises(ValueError, match="at least one reference"):
        rouge_l("x", [])


@pytest.mark.parametrize(
    "prediction, reference",
    [
        ("The Eiffel Tower is in Paris, France.", "Paris is where the Eiffel tower stands."),
        ("I have read about everything in the Internet Archive.", "I have read just about everything."),
        ("Cats sleeping all day long", "cat sleeps during the day"),
    ],
)
def test_rouge_l_equals_rouge_score_package(prediction, reference):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l(prediction, [reference]) == pytest.approx(
        100 * scorer.score(reference, prediction)["rougeL"].fmeasure
    )


# ---------------------------------------------------------------------- generation
def _untied_model(tokenizer):
    """A tiny random Llama with an untied head: a tied random model just repeats its input
    token ("\n" after the assistant header), which strips to an empty, uninformative response."""
    from adakd.models.loading import tiny_random_llama

    return tiny_random_llama(
        len(tokenizer),
        layers=2,
        hidden=32,
        seed=7,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _force_token(model, token_id):
    """An untied head that always prefers `token_id` (zero weights, one large bias)."""
    head = torch.nn.Linear(model.config.hidden_size, model.config.vocab_size, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token_id] = 10.0
    model.lm_head = head
    return model


def test_sampling_is_reproducible_per_seed_and_leaves_rng_and_mode(tiny_pair):
    model, tok = tiny_pair.student, tiny_pair.tokenizer
    model.train()
    defaults = model.generation_config
    rng = torch.get_rng_state()
    kwargs = dict(max_new_tokens=6, batch_size=2, max_prompt_length=64)
    first = generate_responses(model, tok, PROMPTS, seed=3, **kwargs)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and model.generation_config is defaults
    torch.manual_seed(999)  # the caller's RNG position does not matter
    again = generate_responses(model, tok, PROMPTS, seed=3, **kwargs)
    other = generate_responses(model, tok, PROMPTS, seed=4, **kwargs)
    assert first == again
    assert first != other
    assert len(first) == 3 and all(isinstance(r, str) for r in first)


def test_sampled_replies_do_not_depend_on_the_batch(tiny_pair):
    """Each (seed, prompt) reply has its own generator: batch size and neighbours change nothing."""
    model, tok = tiny_pair.student, tiny_pair.tokenizer
    kwargs = dict(seeds=[3, 4], max_new_tokens=6, max_prompt_length=64)
    together = generate_for_seeds(model, tok, PROMPTS, batch_size=6, **kwargs)
    one_by_one = generate_for_seeds(model, tok, PROMPTS, batch_size=1, **kwargs)
    assert together == one_by_one
    assert together[0] == generate_responses(model, tok, PROMPTS, seed=3, batch_size=2, max_new_tokens=6)
    assert together[0] != together[1]  # the seeds draw differently
    # a prompt's reply is the same when it is scored alone, at its own index
    alone = generate_for_seeds(model, tok, PROMPTS[:1], batch_size=4, **kwargs)
    assert [replies[0] for replies in together] == [replies[0] for replies in alone]


def test_greedy_left_padded_batch_equals_plain_greedy_loop(tiny_pair):
    tok = tiny_pair.tokenizer
    model = _untied_model(tok)
    batched = generate_responses(model, tok, PROMPTS, max_new_tokens=5, greedy=True, batch_size=3, max_prompt_length=64)
    assert all(batched) and len(set(batched)) > 1  # real text, and the rows differ
    stop = stop_token_ids(tok)
    model.eval()
    for example, response in zip(PROMPTS, batched, strict=True):
        ids = encode_prompt(tok, example, 64)
        out = []
        with torch.no_grad():
            for _ in range(5):  # no padding, no cache: the full sequence every time
                nxt = int(model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
                if nxt in stop:
                    break
                out.append(nxt)
        assert response == tok.decode(out, skip_special_tokens=True).strip()


def test_generation_stops_at_end_of_turn_and_honours_max_new_tokens(tiny_pair):
    tok = tiny_pair.tokenizer
    assert tok.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tok)
    ender = _force_token(tiny_pair.student, tok.convert_tokens_to_ids("<|im_end|>"))
    assert generate_responses(ender, tok, PROMPTS[:2], max_new_tokens=8) == ["", ""]
    hello = tok(" hello", add_special_tokens=False).input_ids
    assert len(hello) == 1
    talker = _force_token(tiny_pair.teacher, hello[0])
    assert generate_responses(talker, tok, PROMPTS[:1], max_new_tokens=3, greedy=True) == ["hello hello hello"]


def test_generation_rejects_bad_settings(tiny_pair):
    with pytest.raises(ValueError, match="top_p"):
        generate_responses(tiny_pair.student, tiny_pair.tokenizer, PROMPTS, max_new_tokens=2, top_p=0.0)
    with pytest.raises(ValueError, match=">= 1"):
        generate_responses(tiny_pair.student, tiny_pair.tokenizer, PROMPTS, max_new_tokens=0)


# ---------------------------------------------------------------------- eval.jsonl records
def test_evaluate_model_record_with_known_responses(tiny_pair):
    """A model that always answers "Paris" (then stops): ROUGE-L by hand per example."""
    tok = tiny_pair.tokenizer
    paris = tok(" Paris", add_special_tokens=False).input_ids
    assert len(paris) == 1
    model = _force_token(tiny_pair.student, paris[0])
    datasets = {"qa": PROMPTS[:1], "mixed": PROMPTS}
    record = evaluate_model(
        model, tok, datasets, step=12, model_name="student", max_new_tokens=1, greedy=True, seed=5, keep_samples=2
    )
    # "Paris" vs "Paris" = 100; vs "The sea is calm." = 0; vs "The capital is Paris": P = 1, R = 1/4 -> 40
    assert record["rouge_l"] == {"qa": pytest.approx(100.0), "mixed": pytest.approx((100 + 0 + 40) / 3)}
    assert record["rouge_l_avg"] == pytest.approx((100.0 + 140 / 3) / 2)
    assert record["n"] == {"qa": 1, "mixed": 3}
    assert record["step"] == 12 and record["model"] == "student"
    assert record["decoding"] == {
        "greedy": True,
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 1,
        "seed": 5,
        "seeds": [5],
        "sampler": "greedy",
    }
    assert [s["response"] for s in record["samples"]["mixed"]] == ["Paris", "Paris"]
    assert record["samples"]["mixed"][1] == {
        "instruction": PROMPTS[1].instruction,
        "reference": "The sea is calm.",
        "references": ["The sea is calm."],
        "response": "Paris",
        "rouge_l": 0.0,
        "degenerate": False,
    }
    # greedy: one "seed", no spread; no max_length: no reference scores
    assert record["rouge_l_seeds"] == {"qa": [pytest.approx(100.0)], "mixed": [pytest.approx(140 / 3)]}
    assert record["rouge_l_spread"] == {"qa": 0.0, "mixed": 0.0}
    assert record["degenerate"] == {"qa": 0.0, "mixed": 0.0} and record["ce"] == {} and record["ce_avg"] is None
    json.dumps(record, allow_nan=False)  # one strict JSON line
    with pytest.raises(ValueError, match="at least one example"):
        evaluate_model(model, tok, {"empty": []}, step=0, model_name="student")


# ---------------------------------------------------------------------- python -m adakd eval RUN
@pytest.mark.slow
def test_evaluate_run_scores_latest_checkpoint_on_given_files(tmp_path):
    from adakd.presets import resolve_preset
    from adakd.runs.rundir import RunDir
    from adakd.training.trainer import train

    run = RunDir(
        train(
            resolve_preset("smoke", ["max_steps=2", "probe_interval=0", "eval_examples=0", "eval_max_new_tokens=3"]),
            tmp_path / "run",
        )
    )
    dolly = tmp_path / "my-dolly.jsonl"
    dolly.write_text(
        "\n".join(
            json.dumps(
                {
                    "instruction": f"Name a colour ({i}).",
                    "context": "",
                    "response": "Blue is the colour of the clear sky on a bright and sunny day.",
                    "category": "open_qa",
                }
            )
            for i in range(4)
        )
        + "\n"
    )
    alpaca = tmp_path / "my-alpaca.json"
    alpaca.write_text(
        json.dumps(
            [
                {
                    "instruction": "Say yes.",
                    "input": "",
                    "output": "Yes, I can say yes to that question and I am happy to do so.",
                }
            ]
        )
    )

    record = evaluate_run(run.path, [str(dolly), str(alpaca)], examples=3, greedy=True)
    assert record["step"] == 2 and record["model"] == "student"
    assert record["n"] == {"my-dolly": 3, "my-alpaca": 1}
    assert record["decoding"]["greedy"] is True and record["decoding"]["max_new_tokens"] == 3
    assert run.read_eval() == [record]
    assert run.read_events()[-1]["kind"] == "eval"

    held_out = evaluate_run(run.path, examples=2)  # the run's own held-out split
    assert held_out["n"] == {"chatterbot": 2} and held_out["decoding"]["greedy"] is False
    assert len(run.read_eval()) == 2
    with pytest.raises(ValueError, match="not a run directory"):
        evaluate_run(tmp_path)


@pytest.mark.slow
def test_teacher_and_initial_student_evaluations_are_cached_across_runs(tmp_path, isolated_cache):
    """Two runs with the same models and prompts: the second reuses the first's teacher and initial
    records (same scores, event says cached); the final student, which differs by seed, is not."""
    from adakd.presets import resolve_preset
    from adakd.runs.rundir import RunDir
    from adakd.training.trainer import train

    settings = [
        "max_steps=2",
        "probe_interval=0",
        "eval_examples=2",
        "eval_max_new_tokens=3",
        "eval_seeds=2",
        "eval_min_reference_words=0",
    ]
    first = RunDir(train(resolve_preset("smoke", settings), tmp_path / "a"))
    second = RunDir(train(resolve_preset("smoke", settings + ["lr=0.01"]), tmp_path / "b"))
    entries = list((isolated_cache / "evals").glob("*.json"))
    assert len(entries) == 2  # teacher, initial student

    def by_model(run):
        return {r["model"]: r for r in run.read_eval()}

    a, b = by_model(first), by_model(second)
    for name in ("teacher", "student_init"):
        assert {k: v for k, v in a[name].items() if k != "seconds"} == {
            k: v for k, v in b[name].items() if k != "seconds"
        }
    assert a["student_init"]["kl_teacher_avg"] > 0 and a["teacher"]["kl_teacher_avg"] is None
    cached = [e for e in second.read_events() if e["kind"] == "eval"]
    assert [e.get("cached") for e in cached][:2] == [True, True] and cached[-1].get("cached") is False
    # an unreadable or foreign entry is a miss (recomputed), never trusted
    from adakd.evaluation.cache import load_record

    assert load_record(entries[0].stem) is not None
    entries[0].write_text("{not json")
    entries[1].write_text('{"something": "else"}')
    assert load_record(entries[0].stem) is None and load_record(entries[1].stem) is None
