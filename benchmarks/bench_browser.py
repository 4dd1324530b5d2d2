"""The dashboard's browser path: the real `streamlit run app/main.py` and headless Chromium
(tests/browser_harness.py), on the shipped sample runs.

    .venv/bin/python benchmarks/bench_browser.py [--repeats 3]

Measured, wall-clock from the action (page load, button click) to the page's last change
(script run over, every chart drawn, then no change in the DOM for 1 s; polled every 50 ms):
- each of the eight pages loaded by URL (a fresh session: what a reload or a shared link costs);
  target ≤ 2 s each;
- Compare with 8 sample runs chosen in the URL; target ≤ 3 s;
- Token explorer on the first sample run's own teacher and student: the first Analyse (models
  load, teacher reply, scoring), Analyse of a new prompt with the models loaded (target ≤ 3 s),
  and Analyse again after moving r one step (re-scoring; target ≤ 1 s); then Analyse of new
  prompts with a reference reply (no generation: scoring and the page; target ≤ 3 s).
First visits (cold server caches) and medians of the later ones are printed separately; the
machine and its load come first. Exits 1 when a median misses its target.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests/browser_harness.py and the packages, as a script from anywhere
PAGES = ["", "train", "dynamics", "gradients", "temperature", "compare", "explorer", "export"]
PAGE_TARGET_S, COMPARE_TARGET_S, ANALYSE_TARGET_S, RESCORE_TARGET_S = 2.0, 3.0, 3.0, 1.0
SCRIPT_DONE = """() => document.querySelector('[data-testid="stApp"]')
    ?.getAttribute('data-test-script-state') === 'notRunning'"""
PROMPTS = [
    "Which planet is called the red planet?",
    "Name three primary colours.",
    "What do bees make?",
    "Give one use of a hammer.",
    "Why is the sky blue?",
    "What is the capital of France?",
    "How many legs does a spider have?",
]

REFERENCES = [
    ("Name a fruit that is yellow.", "A banana is a yellow fruit that grows in bunches on large plants."),
    ("What is ice?", "Ice is water that has frozen solid because its temperature fell below zero degrees."),
    ("Where do fish live?", "Fish live in water: in oceans, rivers, lakes and ponds all over the world."),
    ("What is a library?", "A library is a place where people can borrow books and read them for free."),
    ("What does a baker do?", "A baker makes bread, cakes and pastries, usually early in the morning."),
    ("Why do we sleep?", "We sleep so that the body and the brain can rest, repair and store memories."),
]


def _bench_pages():
    """benchmarks/bench_pages.py as a module, for its machine line."""
    spec = importlib.util.spec_from_file_location("bench_pages", REPO / "benchmarks" / "bench_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed_load(page, url: str, settle) -> float:
    start = time.perf_counter()
    page.goto(url)
    page.locator('[data-testid="stHeading"], h1').first.wait_for()
    page.wait_for_function(SCRIPT_DONE)
    done = settle(page, quiet_s=1.0, poll_s=0.05)
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"{url}: {page.locator('[data-testid=stException]').first.inner_text()}")
    return done - start


def timed_analyse(page, act_and_settle) -> float:
    """From the click on Analyse to the page's last change after the script run it started."""
    button = page.get_by_role("button", name="Analyse")
    start = time.perf_counter()
    done = act_and_settle(page, button.click, quiet_s=1.0, poll_s=0.05)
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(page.locator('[data-testid="stException"]').first.inner_text())
    return done - start


def reply_tokens(page) -> int | None:
    """The length of the reply the explorer scored, from its "Reply scored (…, N tokens)" line."""
    found = re.search(r"Reply scored \([^,]+, (\d+) tokens\)", page.locator('[data-testid="stMain"]').inner_text())
    return int(found.group(1)) if found else None


def line(what: str, first: float, later: list[float], target: float) -> bool:
    median = statistics.median(later) if later else first
    ok = median <= target
    print(f"{what:44s} {first:7.2f} {median:7.2f}   ≤ {target:g} s {'yes' if ok else 'NO'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="later visits per measurement (median)")
    args = parser.parse_args()
    from analysis.runs import SAMPLE_RUNS_DIR, find_runs
    from tests.browser_harness import act_and_settle, browser_page, dashboard_server, settle

    runs = find_runs([SAMPLE_RUNS_DIR])
    if len(runs) < 8:
        print(f"needs 8 sample runs under {SAMPLE_RUNS_DIR} (found {len(runs)})")
        return 2
    compare = "&".join(f"compare-runs=sample_runs/{p.relative_to(SAMPLE_RUNS_DIR)}" for p in runs[:8])
    print(f"machine: {_bench_pages().machine()}")
    print(f"runs:    {len(runs)} sample runs; Chromium 1600 × 1000; medians of {args.repeats}")
    print(f"{'':44s} {'first':>7s} {'median':>7s}   target (s)")
    ok = True
    with tempfile.TemporaryDirectory() as root, dashboard_server(Path(root), Path(root) / "streamlit.log") as url:
        with browser_page(1600, 1000) as page:
            for path in PAGES:
                first = timed_load(page, f"{url}/{path}", settle)
                later = [timed_load(page, f"{url}/{path}", settle) for _ in range(args.repeats)]
                ok &= line(f"page /{path}", first, later, PAGE_TARGET_S)
            first = timed_load(page, f"{url}/compare?{compare}", settle)
            later = [timed_load(page, f"{url}/compare?{compare}", settle) for _ in range(args.repeats)]
            ok &= line("Compare, 8 runs", first, later, COMPARE_TARGET_S)

            timed_load(page, f"{url}/explorer", settle)
            # the explorer is on the session's default run (the newest finished one); its teacher's
            # reply length decides the generation time, so both are printed
            print(f"explorer: {unquote(parse_qs(urlparse(page.url).query).get('selected_runs', ['?'])[0])}")
            prompt = page.get_by_role("textbox", name="Prompt", exact=True)
            prompt.fill(PROMPTS[0])
            cold = timed_analyse(page, act_and_settle)
            print(f"{'Analyse, first (models load)':44s} {cold:7.2f}")
            loaded = []
            lengths = []
            for text in PROMPTS[1 : 1 + args.repeats]:
                prompt.fill(text)
                loaded.append(timed_analyse(page, act_and_settle))
                lengths.append(reply_tokens(page))
            ok &= line("Analyse a new prompt, models loaded", loaded[0], loaded, ANALYSE_TARGET_S)
            print(f"{'  (teacher replies, tokens)':44s} {', '.join(map(str, lengths))}")
            slider = page.get_by_role("slider", name="LATF ratio r")
            moves = []
            for i in range(args.repeats + 1):
                slider.focus()
                # r ± 0.05 inside the form (no script run until Analyse), on a reply scored before
                slider.press("ArrowLeft" if i % 2 == 0 else "ArrowRight")
                moves.append(timed_analyse(page, act_and_settle))
            ok &= line("Re-score after moving r", moves[0], moves[1:], RESCORE_TARGET_S)
            # The same with a reference reply: no generation, so what is left is scoring and the page.
            reference = page.get_by_role("textbox", name="Reference reply (optional)", exact=True)
            scored = []
            for text, reply in REFERENCES[: args.repeats + 1]:
                prompt.fill(text)
                reference.fill(reply)
                scored.append(timed_analyse(page, act_and_settle))
            ok &= line("Analyse a new prompt + reference reply", scored[0], scored[1:], ANALYSE_TARGET_S)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
