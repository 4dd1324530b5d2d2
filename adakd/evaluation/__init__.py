"""Evaluation as the paper scores it, and the protocol around it.

evaluate.py          sampled replies, ROUGE-L, evaluate_model / evaluate_run
protocol.py          the evaluation protocol as pure functions (prompts, seeds, degenerate replies, the gate)
reference_scores.py  held-out cross-entropy and KL(teacher ‖ model) on reference replies
decoding.py          every generate() setting explicit
cache.py             the teacher's and the initial student's records, shared by a study's runs
"""
