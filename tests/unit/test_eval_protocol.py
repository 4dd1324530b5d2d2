"""The evaluation protocol (adakd/evaluation/protocol.py): filters, grouping, seeds, degenerate replies and
the validity gate, each against values worked out by hand."""

import math

import pytest

from adakd.data.instructions import Example, long_reference_split, split_examples
from adakd.evaluation.protocol import (
    EvalPrompt,
    evaluation_prompts,
    gate_check,
    gate_passed,
    group_prompts,
    is_degenerate,
    keep_long_references,
    repeated_trigram_share,
    summarise_seeds,
    summary_table,
    words,
)

LONG = "one two three four five six seven eight nine ten eleven"  # exactly 11 words
SHORT = "one two three four five six seven eight nine ten"  # 10 words


def test_words_are_rouge_tokens():
    assert words("Hello, World! It's 2026.") == ["hello", "world", "it", "s", "2026"]
    assert len(words(LONG)) == 11 and len(words(SHORT)) == 10


def test_duplicate_prompts_are_grouped_with_all_their_references():
    examples = [
        Example("What is AI?", "", "A field.", "ai"),
        Example("Hi", "", "Hello", "greet"),
        Example("What is AI?", "", "Machines that think.", "ai"),
        Example("What is AI?", "", "A field.", "ai"),
    ]
    grouped = group_prompts(examples)
    assert [p.instruction for p in grouped] == ["What is AI?", "Hi"]  # first-seen order
    assert grouped[0].references == ("A field.", "Machines that think.")  # repeated reference once
    assert grouped[0].response == "A field." and grouped[0].category == "ai"
    # a different context is a different prompt
    assert len(group_prompts([Example("Q", "a", "x"), Example("Q", "b", "y")])) == 2


def test_only_references_of_eleven_words_count():
    prompts = [
        EvalPrompt("a", "", (SHORT, LONG)),
        EvalPrompt("b", "", (SHORT,)),
        EvalPrompt("c", "", (LONG + " twelve",)),
    ]
    kept = keep_long_references(prompts)
    assert [p.instruction for p in kept] == ["a", "c"]
    assert kept[0].references == (LONG,) and kept[0].response == LONG
    assert keep_long_references(prompts, min_words=0) == [
        EvalPrompt("a", "", (SHORT, LONG)),
        EvalPrompt("b", "", (SHORT,)),
        EvalPrompt("c", "", (LONG + " twelve",)),
    ]


def test_evaluation_prompts_group_filter_then_spread():
    examples = [Example(f"q{i}", "", LONG if i % 2 else SHORT) for i in range(10)]  # q1, q3, ... long
    examples.append(Example("q0", "", LONG))  # q0 gains a long reference: grouped with its short one
    prompts = evaluation_prompts(examples, count=3)
    everything = evaluation_prompts(examples, count=100)
    assert [p.instruction for p in everything] == ["q0", "q1", "q3", "q5", "q7", "q9"]
    assert [p.instruction for p in prompts] == ["q0", "q3", "q7"]  # indices 0, 2, 4 of 6


def test_degenerate_replies():
    assert repeated_trigram_share("a b c a b c") == pytest.approx(1 / 4)  # abc bca cab abc: 1 repeat of 4
    assert repeated_trigram_share("yes") == 0.0
    assert is_degenerate("") and is_degenerate("  ...  ")
    salad = "The \nThe \nThe \nI can, a \nI can, a \nI, I, I"  # 12 words, 4 distinct; 2 of 10 trigrams repeat
    assert repeated_trigram_share(salad) == pytest.approx(2 / 10) and is_degenerate(salad)
    assert not is_degenerate("the cat sat on the mat and the dog")  # 9 words, 7 distinct
    assert is_degenerate("the the the the the")  # 3 trigrams, 2 repeats: 2/3
    assert not is_degenerate("Yes.") and not is_degenerate("Paris is the capital of France.")
    # exactly half repeated trigrams counts as degenerate (short replies: the distinct-word rule needs 8 words)
    assert repeated_trigram_share("x y z x y z x") == pytest.approx(2 / 5) and not is_degenerate("x y z x y z x")
    assert repeated_trigram_share("x y x y x y") == pytest.approx(2 / 4) and is_degenerate("x y x y x y")


def test_seed_summary_is_mean_of_seed_means_with_sample_sd():
    summary = summarise_seeds([[10.0, 20.0], [20.0, 30.0], [30.0, 40.0]])  # seed means 15, 25, 35
    assert summary.per_seed == (15.0, 25.0, 35.0)
    assert summary.mean == pytest.approx(25.0) and summary.spread == pytest.approx(10.0)
    assert summarise_seeds([[3.0, 5.0]]).spread == 0.0
    with pytest.raises(ValueError):
        summarise_seeds([[]])


def test_gate_needs_order_and_gaps_beyond_twice_the_spread():
    ok = gate_check("rouge_l", teacher=20.0, initial=5.0, final=12.0, spread=1.0)
    assert ok.passed and "teacher 20.00" in ok.reason
    close = gate_check("rouge_l", teacher=20.0, initial=5.0, final=6.5, spread=1.0)  # final−initial 1.5 ≤ 2
    assert not close.passed and "final − initial +1.50" in close.reason
    assert not close.learned and close.below_teacher
    above_teacher = gate_check("rouge_l", teacher=10.0, initial=5.0, final=11.0, spread=0.0)
    assert not above_teacher.passed and "teacher − final -1.00" in above_teacher.reason
    assert above_teacher.learned and not above_teacher.below_teacher  # reached the teacher's score
    assert ok.learned and ok.below_teacher
    # lower is better for cross-entropy: teacher 2 < final 3 < initial 5
    ce = gate_check("ce", teacher=2.0, initial=5.0, final=3.0, spread=0.2, higher_is_better=False)
    assert ce.passed
    assert not gate_check("ce", teacher=2.0, initial=5.0, final=4.7, spread=0.2, higher_is_better=False).passed
    assert not gate_check("ce", teacher=math.nan, initial=5.0, final=3.0, spread=0.0).passed
    assert gate_passed([ok, ce]) and not gate_passed([ok, close]) and not gate_passed([])


def test_long_reference_split_holds_out_long_prompts_whole():
    examples = [Example(f"q{i}", "", LONG if i < 8 else SHORT) for i in range(40)]
    examples += [
        Example("q3", "", "a second, short reply"),
        Example("Q3 ", "", SHORT),
    ]  # same prompt as q3 (case/space)
    train, val, test = long_reference_split(examples, held_out=5, seed=0)
    test_prompts = {e.instruction.strip().lower() for e in test}
    assert len(test_prompts) == 5 and all(int(p[1:]) < 8 for p in test_prompts)
    # every reply of a held-out prompt is held out, and nothing is lost or duplicated
    assert not test_prompts & {e.instruction.strip().lower() for e in train + val}
    assert sorted(map(id, train + val + test)) == sorted(map(id, examples))
    assert long_reference_split(examples, held_out=5, seed=0) == (train, val, test)  # deterministic
    with pytest.raises(ValueError, match="only 8 prompts"):
        long_reference_split(examples, held_out=9)
    # the plain split is unchanged by the refactoring of the grouping
    assert split_examples(examples, seed=3) == split_examples(list(examples), seed=3)


def test_summary_table_rows():
    record = {
        "step": 100,
        "model": "student",
        "rouge_l": {"chat": 12.345},
        "rouge_l_spread": {"chat": 0.5},
        "n": {"chat": 120},
        "degenerate": {"chat": 0.05},
        "ce": {"chat": 3.25},
        "kl_teacher": {"chat": 0.75},
    }
    table = summary_table([record])
    row = [line for line in table.splitlines() if line.startswith("student")][0]
    assert row.split() == ["student", "100", "chat", "120", "12.35", "±", "0.50", "5.0", "%", "3.250", "0.750"]


def test_a_dataset_without_long_replies_is_refused_before_anything_loads(tmp_path):
    import json

    from adakd.presets import resolve_preset
    from adakd.training.runsetup import preflight

    data = tmp_path / "short.jsonl"
    data.write_text(
        "".join(
            json.dumps({"instruction": f"Say hi ({i}).", "context": "", "response": "Hi."}) + "\n" for i in range(20)
        )
    )
    config = resolve_preset("smoke", [f"data={data}", "eval_examples=4"])
    with pytest.raises(ValueError, match="eval_min_reference_words lower"):
        preflight(config)
    preflight(resolve_preset("smoke", [f"data={data}", "eval_examples=4", "eval_min_reference_words=0"]))
    preflight(resolve_preset("smoke", [f"data={data}", "eval_examples=0"]))  # no evaluation: nothing to check
