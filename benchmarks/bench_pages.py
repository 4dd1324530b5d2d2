"""How long each dashboard page takes to render one run (target: ≤ 2 s on a 2-core CPU).

    .venv/bin/python benchmarks/bench_pages.py [--repeats 5] [--run PATH]

Each page is rendered with Streamlit's AppTest (the page script runs exactly as in the
server, minus the browser) on one run: the first run under sample_runs/ by default, or a
hand-made run (tests/rundir_factory.py, 60 steps, 4 probe examples × 24 tokens, 7 probe
steps) when there are no sample runs yet. Reported per page: the first render in this
process (cold caches: reading the run, building the frames) and the median of the later
renders in fresh sessions (the run and frames cached, as for a second visitor or a rerun).
The machine is printed first; timings are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PAGES = [
    "views/runs.py",
    "views/train.py",
    "views/dynamics.py",
    "views/gradients.py",
    "views/temperature.py",
    "views/compare.py",
    "views/explorer.py",
    "views/export.py",
]
TARGET_S = 2.0


def machine() -> str:
    import streamlit

    cpus = os.cpu_count()
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cpus
    model = ""
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{platform.platform()} · {model or platform.processor()} · {usable}/{cpus} CPUs usable · "
        f"load {load:.1f} · Python {platform.python_version()} · Streamlit {streamlit.__version__}"
    )


def _rundir_factory():
    """tests/rundir_factory.py as a module (tests/ is not an installed package)."""
    spec = importlib.util.spec_from_file_location("rundir_factory", REPO / "tests" / "rundir_factory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pick_run(explicit: str | None) -> tuple[Path, str]:
    if explicit:
        return Path(explicit).resolve(), "given"
    from analysis.runs import SAMPLE_RUNS_DIR, find_runs

    samples = find_runs([SAMPLE_RUNS_DIR])
    if samples:
        return samples[0], "sample run"
    make_run = _rundir_factory().make_run

    root = Path(tempfile.mkdtemp(prefix="bench-runs-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    path = make_run(
        root,
        "bench-run",
        steps=60,
        probe_steps=[0, 10, 20, 30, 40, 50, 60],
        n_examples=4,
        n_tokens=24,
        checkpoints=[60],
        final_rouge={"chatterbot": 30.0},
    )
    return path, "hand-made run (no sample runs yet)"


def render(page: str, run: Path) -> float:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app" / "main.py"), default_timeout=120)
    at.session_state["selected_runs"] = [str(run)]
    at.run()  # the entry script alone (the default page is Runs)
    if page == "views/runs.py":
        start = time.perf_counter()
        at.run()
    else:
        start = time.perf_counter()
        at.switch_page(page).run()
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"{page}: {at.exception[0].value}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run", help="a run directory (default: the first sample run)")
    args = parser.parse_args()
    run, kind = pick_run(args.run)
    os.environ.setdefault("ADAKD_RUNS", str(run.parent))
    print(f"machine: {machine()}")
    print(f"run:     {run} ({kind})")
    print(f"{'page':28s} {'first':>7s} {'median':>7s}  (s; target ≤ {TARGET_S:g} s)")
    worst = 0.0
    for page in PAGES:
        first = render(page, run)
        later = [render(page, run) for _ in range(args.repeats)]
        median = statistics.median(later)
        worst = max(worst, first, median)
        flag = "" if max(first, median) <= TARGET_S else "  over target"
        print(f"{page:28s} {first:7.2f} {median:7.2f}{flag}")
    print(f"slowest: {worst:.2f} s")
    return 0 if worst <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
