"""Train a sample run again from its config.json and compare every recorded number.

    .venv/bin/python scripts/check_sample_run.py "sample_runs/ablation/seed=0,ablation=full"

The run is trained again into a temporary folder with the same RunConfig (the same code path
as `python -m adakd train`), then metrics.jsonl (every field but wall-clock timings),
tokens.parquet, gradients.parquet, eval.jsonl (scores and stored replies) and the LATF ratio
changes are compared exactly. On the machine that produced the run they must be identical;
another CPU model or library build may differ in the last bits (floating-point kernels).
Exit code 0 when identical, 1 when anything differs. Takes as long as the run (demo: ~2.5 min
on an idle 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported: it reads this once

import pandas as pd  # noqa: E402

from adakd.config import RunConfig  # noqa: E402
from adakd.runs.rundir import read_jsonl  # noqa: E402

WALL_CLOCK = {"time", "tokens_per_s", "step_seconds", "seconds"}  # differ on every run
# eval.jsonl fields that come from sampled replies: comparable only between records of the same
# sampler (records written before the row-seeded sampler have no decoding.sampler)
SAMPLED = {
    "rouge_l",
    "rouge_l_spread",
    "rouge_l_seeds",
    "degenerate",
    "samples",
    "rouge_l_avg",
    "rouge_l_spread_avg",
    "degenerate_avg",
    "decoding",
}


def _sampler(record: dict) -> str:
    return (record.get("decoding") or {}).get("sampler", "global generator, seed by seed")


def differences(old: Path, new: Path, notes: list[str] | None = None) -> list[str]:
    """Human-readable differences between two run folders' recorded numbers (empty: identical).

    ``notes`` (when given) collects what was not compared and why."""
    found: list[str] = []
    notes = [] if notes is None else notes
    for name in ("metrics.jsonl", "eval.jsonl"):
        a, b = read_jsonl(old / name), read_jsonl(new / name)
        if len(a) != len(b):
            found.append(f"{name}: {len(a)} records vs {len(b)}")
        for x, y in zip(a, b, strict=False):  # unequal lengths are reported above; compare the common part
            skip = WALL_CLOCK
            if name == "eval.jsonl" and _sampler(x) != _sampler(y):
                skip = WALL_CLOCK | SAMPLED  # other draws by design; CE and KL must still agree
                notes.append(
                    f"eval.jsonl step {x.get('step')} {x.get('model', '')}: replies not compared "
                    f"(sampler {_sampler(x)!r} vs {_sampler(y)!r})"
                )
            for key in sorted((set(x) | set(y)) - skip):
                if x.get(key) != y.get(key):
                    found.append(
                        f"{name} step {x.get('step')} {x.get('model', '')} {key}: "
                        f"{str(x.get(key))[:60]} vs {str(y.get(key))[:60]}"
                    )
    for name in ("tokens.parquet", "gradients.parquet"):
        if (old / name).exists() != (new / name).exists():
            found.append(f"{name}: present in only one run")
            continue
        if (old / name).exists():
            try:
                pd.testing.assert_frame_equal(
                    pd.read_parquet(old / name), pd.read_parquet(new / name), check_exact=True
                )
            except AssertionError as err:
                found.append(f"{name}: {' '.join(str(err).split())[:200]}")
    ratio_changes = [
        [(e["step"], e.get("new")) for e in read_jsonl(run / "events.jsonl") if e.get("kind") == "ratio_change"]
        for run in (old, new)
    ]
    if ratio_changes[0] != ratio_changes[1]:
        found.append(f"LATF ratio changes differ: {ratio_changes[0]} vs {ratio_changes[1]}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder, e.g. sample_runs/ablation/<run>")
    parser.add_argument("--keep", type=Path, default=None, help="train into this folder and keep it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the trainer logs its steps; no "Loading weights" bars
    meta = json.loads((args.run / "config.json").read_text(encoding="utf-8"))
    config = RunConfig.from_record(meta["config"])
    from adakd.training.trainer import train

    with tempfile.TemporaryDirectory(prefix="adakd-check-") as scratch:
        target = args.keep or Path(scratch) / args.run.name
        print(f"training {args.run} again into {target} ({config.max_steps} steps)", flush=True)
        train(config, target, name=args.run.name, preset=meta.get("preset"), command=sys.argv)
        notes: list[str] = []
        found = differences(args.run, target, notes)
    recorded = meta.get("machine", {})
    print(f"recorded on: {recorded}")
    print("\n".join(f"note: {line}" for line in notes))
    if found:
        print(f"{len(found)} difference(s):")
        print("\n".join(f"  {line}" for line in found[:40]))
        return 1
    print("identical: metrics, probes (tokens, gradients), evaluation and LATF ratio changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
