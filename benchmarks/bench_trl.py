"""The same run trained by the project's loop and by TRL's DistillationTrainer with the AdaKD loss.

    .venv/bin/python benchmarks/bench_trl.py [--preset quick] [--steps 12] [--rounds 2] [--set key=value ...]

Both trainers run the same RunConfig (same models, data order, optimiser, LR schedule and loss;
tests/integration/test_trl.py checks that they take the same steps) in this one process,
alternating native, trl, native, trl, ... so machine noise hits both alike. Evaluation, probes and
checkpoints are off, so a step is data + teacher forward + student forward/backward + AdamW.
Prints the machine, the median step time of each (the steps' own `step_seconds`, the first
`--skip` steps of each run left out as warm-up), the ratio trl / native, and the first-step
losses side by side. Not a test: timings depend on the machine; run it by hand.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from adakd.presets import resolve_preset  # noqa: E402
from adakd.runs.rundir import RunDir  # noqa: E402
from adakd.training.trainer import train  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--steps", type=int, default=12, help="optimiser steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs per trainer, alternating")
    parser.add_argument("--skip", type=int, default=2, help="first steps of each run left out (warm-up)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    quiet = ["eval_examples=0", "probe_interval=0", "checkpoint_interval=0", "log_interval=1"]
    base = [f"max_steps={args.steps}", *quiet, *args.set]
    load = "load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    print(f"machine: CPU {cpu_name()} x{os.cpu_count()}, torch {torch.__version__}, {load}")
    print(f"preset {args.preset}, {args.steps} steps per run, {args.rounds} rounds, settings: {' '.join(base)}")
    steps: dict[str, list[float]] = {"native": [], "trl": []}
    walls: dict[str, list[float]] = {"native": [], "trl": []}
    first_loss: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as root:
        for round_ in range(args.rounds):
            for name, extra in (("native", []), ("trl", ["trainer=trl"])):
                config = resolve_preset(args.preset, [*base, *extra])
                started = time.perf_counter()
                path = train(config, Path(root) / f"{name}-{round_}")
                walls[name].append(time.perf_counter() - started)
                metrics = RunDir(path).read_metrics()
                steps[name] += [m["step_seconds"] for m in metrics[args.skip :]]
                first_loss.setdefault(name, metrics[0]["loss"])
    med = {name: statistics.median(values) for name, values in steps.items()}
    for name in ("native", "trl"):
        print(
            f"{name:7s} median step {med[name]:.3f} s over {len(steps[name])} steps; "
            f"run wall {statistics.median(walls[name]):.1f} s (set-up included); first-step loss {first_loss[name]:.6f}"
        )
    print(f"ratio trl / native (median step time): {med['trl'] / med['native']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
