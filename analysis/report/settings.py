"""Constants of the results report: the paper's numbers and how our numbers are read."""

from __future__ import annotations

# The paper's numbers (docs/method.md §9; Qwen2-7B -> Qwen2-1.5B, ROUGE-L x100).
PAPER_TABLE1_RKL = (31.70, 32.97)  # reverse-KL KD, plain -> with AdaKD (five-set average)
PAPER_TABLE2 = {"base": 37.03, "+IDTS": 38.55, "+LATF": 37.07, "full (AdaKD)": 39.01}  # Dolly / S-NI / UnNI average

WEAK_TEACHER_ROUGE = 10.0  # below this the teacher's own ROUGE-L makes the metric a weak signal
NOISE_FLOOR = 2.0  # ROUGE-L points: the least difference read as a signal (seed spread unknown)
WINDOW = 20  # steps averaged for "first" / "last" losses (batch 4: single steps are noisy)
FIGURE_WIDTH = 900
REGENERATE = "bash scripts/make_sample_runs.sh"
