"""analysis.replies: the stored replies of a run's last evaluation, and the share left empty."""

from __future__ import annotations

import math

from analysis import runs as R
from analysis.replies import REPLY_COLUMNS, empty_reply_share, last_eval_record, replies_frame
from tests.rundir_factory import make_run


def record(step, model, replies):
    return {
        "step": step,
        "model": model,
        "rouge_l": {"chatterbot": 1.0},
        "rouge_l_avg": 1.0,
        "n": {"chatterbot": 24},
        "samples": {
            "chatterbot": [
                {"instruction": f"q{i}", "reference": f"r{i}", "response": text, "rouge_l": 10.0 * i}
                for i, text in enumerate(replies)
            ]
        },
    }


def test_the_last_student_evaluation_is_read(tmp_path):
    R.clear_cache()
    evals = [
        record(0, "student_init", ["init"]),
        record(5, "student", ["early"]),
        record(10, "student", ["", "  \n", "Paris.", ""]),
    ]
    evals[2]["samples"]["chatterbot"].append("not a sample")  # damaged entries are skipped
    run = R.load_run(make_run(tmp_path, "run", evals=evals, tokens=False, gradients=False))
    assert last_eval_record(run)["step"] == 10
    frame = replies_frame(run)
    assert tuple(frame.columns) == REPLY_COLUMNS
    assert frame["reply"].tolist() == ["", "  \n", "Paris.", ""]
    assert frame["rouge_l"].tolist() == [0.0, 10.0, 20.0, 30.0]
    assert empty_reply_share(frame) == 0.75  # white space only is empty
    assert replies_frame(run, "student_init")["reply"].tolist() == ["init"]
    R.clear_cache()


def test_no_evaluation_gives_an_empty_frame(tmp_path):
    R.clear_cache()
    run = R.load_run(make_run(tmp_path, "run", evals=False, tokens=False, gradients=False))
    frame = replies_frame(run)
    assert frame.empty and tuple(frame.columns) == REPLY_COLUMNS
    assert last_eval_record(run) is None and math.isnan(empty_reply_share(frame))
    R.clear_cache()
