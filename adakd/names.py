"""Names (and default parameters) of the method's options that the loss modules and RunConfig share.

Kept here, free of torch, so adakd/config.py (which the dashboard imports cheaply) and the
modules that implement the options (divergences.py, difficulty.py, latf.py) share one definition.
"""

# Token difficulty indicators (docs/method.md §1); "hellinger" is the paper's.
INDICATORS = ("hellinger", "fkl", "rkl", "jsd", "ce", "entropy", "topk")

# Schedules of the ratio r of selected tokens (docs/method.md §2, §2.1); "adaptive" is LATF.
LATF_KINDS = ("adaptive", "off", "fixed", "linear", "cosine")

# Base divergences (docs/method.md §4): name -> default parameters (`divergence_params` overrides them).
DIVERGENCES: dict[str, dict[str, float]] = {
    "fkl": {},
    "rkl": {},
    "jsd": {"lam": 0.9},
    "tvd": {},
    "sfkl": {"lam": 0.1},
    "srkl": {"lam": 0.1},
    "ab": {"alpha": 0.2, "beta": 0.7},
    "akl": {"mu": 0.5},
}

# The built-in tiny random Llama, as a teacher or a student name (adakd/training/runsetup.py).
TINY_RANDOM = "tiny-random"
