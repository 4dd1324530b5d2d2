"""The real dashboard server and headless Chromium, shared by tests/browser/ and
benchmarks/bench_browser.py: `streamlit run app/main.py` on a free localhost port, Debian's
/usr/bin/chromium through Playwright, and the waits that say a page is done."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ALL_CHARTS_DRAWN = """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
    .every(e => e.querySelector('.main-svg'))"""
IDLE = """() => !document.querySelector('[data-testid^="stStatusWidgetRunning"]')
    && !document.querySelector('[data-testid^="stSkeleton"]')"""
SCRIPT_STOPPED = """() => ['notRunning', undefined].includes(document.querySelector('[data-testid="stApp"]')
    ?.getAttribute('data-test-script-state') ?? undefined)"""
# Counts the script runs that start after it is called (Streamlit marks its app root with the run
# state): a click whose run is quicker than the running indicator's delay is still seen to run.
COUNT_RUNS = """() => { const app = document.querySelector('[data-testid="stApp"]');
    window.adakdRuns = 0;
    if (window.adakdRunObserver) return;
    window.adakdRunObserver = new MutationObserver(() => {
        if (app.getAttribute('data-test-script-state') === 'running') window.adakdRuns += 1; });
    window.adakdRunObserver.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']}); }"""
RAN_AND_STOPPED = """() => window.adakdRuns > 0 && document.querySelector('[data-testid="stApp"]')
    .getAttribute('data-test-script-state') === 'notRunning'"""


def settle(page, ready: str | None = None, *, quiet_s: float = 0.9, poll_s: float = 0.3) -> float:
    """Wait until the script run is over, every chart and table is drawn and the page stops
    changing for ``quiet_s`` (the running indicator shows only after a delay, so it alone is
    not enough). Returns the perf_counter time of the last change seen (the page's "done")."""
    if ready:
        page.locator(ready).first.wait_for()
    page.wait_for_function(IDLE)
    page.wait_for_function(SCRIPT_STOPPED)  # Streamlit's own run state on the app root
    page.wait_for_function(ALL_CHARTS_DRAWN)
    last, changed, end = None, time.perf_counter(), time.time() + 20
    while time.time() < end:
        size = page.evaluate("() => document.body.innerHTML.length")
        now = time.perf_counter()
        if size != last:
            last, changed = size, now
        elif now - changed >= quiet_s:
            break
        time.sleep(poll_s)
    return changed


def act_and_settle(page, action, *, quiet_s: float = 0.9, poll_s: float = 0.3, timeout_ms: float = 600_000) -> float:
    """Perform ``action`` (a click, a key press) and wait until the script run it starts is over
    and the page has settled (see ``settle``). Returns the time of the page's last change, so
    ``act_and_settle(...) - start`` is what the user waited."""
    page.evaluate(COUNT_RUNS)
    action()
    page.wait_for_function(RAN_AND_STOPPED, timeout=timeout_ms)
    return settle(page, quiet_s=quiet_s, poll_s=poll_s)


def wait_until_healthy(url: str, proc: subprocess.Popen, log_path: Path, timeout_s: float = 60) -> None:
    """Return once the Streamlit server at ``url`` answers its health check; raise with the end
    of its log if the process exits or ``timeout_s`` passes first."""
    deadline = time.time() + timeout_s
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"streamlit did not start: {Path(log_path).read_text()[-2000:]}")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def dashboard_server(runs_root: Path, log_path: Path) -> Iterator[str]:
    """The dashboard on ``runs_root`` (``$ADAKD_RUNS``), its output in ``log_path``; yields its URL."""
    port = free_port()
    env = {**os.environ, "ADAKD_RUNS": str(runs_root), "HF_HUB_OFFLINE": "1", "BROWSER_PATH": CHROMIUM}
    command = [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    with open(log_path, "wb") as log:
        out = {"stdout": log, "stderr": subprocess.STDOUT}
        proc = subprocess.Popen(command, cwd=REPO, env=env, start_new_session=True, **out)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url, proc, log_path)
            yield url
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1800) -> Iterator[object]:
    """One headless Chromium tab (downloads accepted, 60 s default timeout)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
            tab = context.new_page()
            tab.set_default_timeout(60_000)
            yield tab
        finally:
            browser.close()
