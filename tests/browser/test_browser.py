"""The real dashboard in a real browser: `streamlit run app/main.py` on a free localhost port,
every page opened in headless Chromium (Debian's /usr/bin/chromium through Playwright).

Checks each page renders its Plotly charts without an error box, runs the token explorer on a
custom prompt (tiny random models), downloads one PNG (checks the PNG signature) and saves a
screenshot of every page under test-artifacts/screenshots/ (gitignored) to look at.
Skipped, with the reason, when chromium is not installed (see tests/conftest.py).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adakd.presets import PRESETS
from tests.browser_harness import REPO, browser_page, dashboard_server, settle
from tests.rundir_factory import make_events, make_run

pytestmark = pytest.mark.browser

SHOTS = REPO / "test-artifacts" / "screenshots"
# url path, page title, Plotly charts expected with the hand-made runs, an element that shows
# the page is complete
PAGES = [
    ("", "Runs", 0, '[data-testid="stDataFrame"] canvas'),
    ("train", "Train", 2, "text=Start"),
    ("dynamics", "Token dynamics", 1, None),  # the open tab's chart only
    ("gradients", "Gradients", 2, None),
    ("temperature", "Temperature & entropy", 1, None),
    ("compare", "Compare", 1, None),
    ("explorer", "Token explorer", 0, "text=Press Analyse"),
    ("export", "Report bundle", 0, "text=Build the bundle"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-runs")
    # the smoke preset's tiny random models: a link into the explorer loads them in a moment
    tiny = {k: PRESETS["smoke"][k] for k in ("teacher", "student", "data", "max_prompt_length", "max_length")}
    make_run(
        root,
        "adakd-demo",
        config={**tiny, "idts_c": 0.3},
        steps=20,
        probe_steps=[0, 10, 20],
        checkpoints=[20],
        final_rouge={"chatterbot": 31.5},
        meta={"started_at": "2026-01-02T00:00:00Z"},
    )
    plain = {**tiny, "latf": "off", "idts": "off"}
    events = make_events(20, plain, "finished")
    at = next(i for i, e in enumerate(events) if e["step"] > 10)
    events[at:at] = [  # stopped after step 10, resumed from its checkpoint
        {"step": 10, "kind": "stopped", "message": "stopped on request", "time": "2026-01-01T00:00:30Z"},
        {
            "step": 10,
            "kind": "resume",
            "message": "resumed",
            "time": "2026-01-01T00:00:40Z",
            "previous_state": "stopped",
        },
    ]
    make_run(
        root,
        "plain-kd",
        config=plain,
        events=events,
        steps=20,
        probe_steps=[0, 10, 20],
        final_rouge={"chatterbot": 29.0},
        loss_scale=1.2,
    )
    with dashboard_server(root, tmp_path_factory.mktemp("server") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with browser_page() as tab:
        yield tab


def open_and_check(page, url: str, title: str, n_charts: int, ready: str | None = None) -> None:
    page.goto(url)
    page.get_by_role("heading", name=title, level=1).wait_for()
    if n_charts:
        page.wait_for_function(f"""() => document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg')
                                   .length >= {n_charts}""")
    settle(page, ready)
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).first.inner_text()
    assert page.locator(".js-plotly-plot").count() >= n_charts


@pytest.mark.parametrize("path, title, n_charts, ready", PAGES, ids=[p[1] for p in PAGES])
def test_page_renders_without_errors(page, server, path, title, n_charts, ready):
    open_and_check(page, f"{server}/{path}", title, n_charts, ready)
    page.screenshot(path=str(SHOTS / f"{path or 'runs'}.png"))


def test_token_explorer_on_a_custom_prompt(page, server):
    open_and_check(page, f"{server}/explorer", "Token explorer", 0, "text=Press Analyse")
    page.get_by_text("tiny random (instant)").click()
    page.get_by_role("textbox", name="Prompt", exact=True).fill("Which planet is called the red planet?")
    page.get_by_role("button", name="Analyse").click()
    page.wait_for_function(
        """() => document.querySelectorAll('[data-testid="stPlotlyChart"] .main-svg').length >= 2""", timeout=180_000
    )
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    reply = page.locator("p", has_text="Reply scored").inner_text()
    n_tokens = int(re.search(r"(\d+) tokens", reply).group(1))
    page.screenshot(path=str(SHOTS / "explorer-result.png"))

    # click the second token of the first row: the top-k bars switch to it
    from app.components import TOKENS_PER_ROW

    rows = -(-n_tokens // TOKENS_PER_ROW)
    box = page.locator('[data-testid="stPlotlyChart"] .nsewdrag').first.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 1.5 / TOKENS_PER_ROW, box["y"] + box["height"] * 0.5 / rows)
    page.wait_for_function("""() => { const c = document.querySelectorAll('[data-testid="stPlotlyChart"]');
        return c.length > 1 && c[1].textContent.includes('Top-k at 1:'); }""")
    settle(page)


def test_token_dynamics_draws_a_tab_when_it_is_opened(page, server):
    """A click on the heat map's tab draws the heat map (a script run, not a hidden chart) and
    puts the tab in the URL; a reload stays on it."""
    open_and_check(page, f"{server}/dynamics", "Token dynamics", 1)
    page.get_by_role("tab", name="Difficulty heat map").click()
    heatmap = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).some(
        p => (p._fullData || []).some(t => t.type === 'heatmap'))"""
    page.wait_for_function(heatmap)
    settle(page)
    assert "dynamics-tab=Difficulty" in page.url
    page.reload()
    page.get_by_role("heading", name="Token dynamics", level=1).wait_for()
    page.wait_for_function(heatmap)
    page.screenshot(path=str(SHOTS / "dynamics-heatmap-tab.png"))


def test_download_one_png(page, server):
    open_and_check(page, f"{server}/dynamics", "Token dynamics", 1)
    button = page.locator('[data-testid="stDownloadButton"] button', has_text="PNG").first
    with page.expect_download(timeout=120_000) as download:
        button.click()
    path = download.value.path()
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:40]
    assert len(data) > 5_000
    assert download.value.suggested_filename.endswith(".png")


def test_compare_choices_survive_navigation_and_reload(page, server):
    """A shared link opens the Compare page on its runs and curve; leaving the page through the
    sidebar and coming back, and reloading, keep them (app/url_state.py)."""
    open_and_check(page, f"{server}/compare?compare-runs=plain-kd&compare-metric=ce", "Compare", 1)
    picker = page.locator('[data-testid="stMultiSelect"]').first
    assert "plain-kd" in picker.inner_text() and "adakd-demo" not in picker.inner_text()
    assert "compare-metric=ce" in page.url

    page.locator('[data-testid="stSidebarNav"] a', has_text="Runs").click()
    page.get_by_role("heading", name="Runs", level=1).wait_for()
    settle(page)
    page.locator('[data-testid="stSidebarNav"] a', has_text="Compare").click()
    page.get_by_role("heading", name="Compare", level=1).wait_for()
    settle(page)
    picker = page.locator('[data-testid="stMultiSelect"]').first
    assert "plain-kd" in picker.inner_text() and "adakd-demo" not in picker.inner_text()
    assert "compare-runs=plain-kd" in page.url and "compare-metric=ce" in page.url

    page.reload()
    page.get_by_role("heading", name="Compare", level=1).wait_for()
    settle(page)
    picker = page.locator('[data-testid="stMultiSelect"]').first
    assert "plain-kd" in picker.inner_text() and "adakd-demo" not in picker.inner_text()
    page.screenshot(path=str(SHOTS / "compare-from-url.png"))


def test_a_stop_and_resume_is_marked_on_the_curves(page, server):
    """plain-kd was stopped after step 10 and resumed: its loss / r curve on Token dynamics shows
    a dotted line captioned "resumed", and its line on Compare a tick at step 10."""
    open_and_check(page, f"{server}/dynamics?selected_runs=plain-kd", "Token dynamics", 1)
    marks = page.locator('[data-testid="stPlotlyChart"] .annotation-text', has_text="resumed")
    assert marks.count() == 1
    page.screenshot(path=str(SHOTS / "dynamics-stop-resume.png"))
    open_and_check(page, f"{server}/compare?compare-runs=plain-kd&compare-runs=adakd-demo", "Compare", 1)
    ticks = page.evaluate(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(
            p => (p._fullData || []).filter(t => (t.name || '').endsWith(': stop / resume'))
            .map(t => [t.name, Array.from(t.x)]))"""
    )
    assert len(ticks) == 1 and list(ticks[0][1]) == [10], ticks


def test_a_token_clicked_in_the_token_diff_opens_the_explorer_there(page, server):
    """Compare → Token diff: a click on a token's point, then "Open with …": the explorer is on
    that run with the probe example, analysed, at that token."""
    open_and_check(page, f"{server}/compare?compare-runs=adakd-demo&compare-runs=plain-kd", "Compare", 1)
    page.get_by_role("tab", name="Token diff").click()
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
            .some(p => (p._fullData || []).some(t => t.name === 'difficulty B − A'))"""
    )
    settle(page)
    diff = page.locator(".js-plotly-plot").filter(has_text="largest changes").first
    box = diff.locator(".scatterlayer .trace .point").first.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    opener = page.get_by_role("button", name=re.compile(r"Open with plain-kd \(B\)"))
    opener.wait_for()
    chosen = page.locator("p", has_text="of probe example").inner_text()
    match = re.search(r"Token ex (\d+) · (\d+): .* of probe example (\d+)", chosen)  # "ex 0 · 1: ␣cat"
    assert match and match.group(1) == match.group(3), chosen
    example, token = int(match.group(1)), int(match.group(2))
    opener.click()
    page.get_by_role("heading", name="Token explorer", level=1).wait_for()
    page.get_by_text(f"Opened from probe example {example}, token {token}").wait_for(timeout=120_000)
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    # the top-k chart is drawn for the chosen token: its title names the linked position
    page.wait_for_function(
        """(token) => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"]'))
            .some(c => c.textContent.includes(`Top-k at ${token}:`))""",
        arg=token,
    )
    page.screenshot(path=str(SHOTS / "explorer-from-token-diff.png"))


CHART_COLOURS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .map(p => [p._fullLayout.font.color, p._fullLayout.paper_bgcolor])"""
APP_BACKGROUND = """() => getComputedStyle(document.querySelector('[data-testid="stApp"]')).backgroundColor"""


def _channels(colour: str) -> list[int]:
    if colour.startswith("#"):
        return [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    return [int(c) for c in re.findall(r"\d+", colour)[:3]]


def _light(colour: str) -> bool:
    """Whether a CSS colour ("#e6e6e6", "rgb(23, 22, 20)") is light (mean channel above half)."""
    return sum(_channels(colour)) / 3 > 127


def _contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two CSS colours (1 to 21; 3 is the minimum for large text)."""

    def luminance(colour: str) -> float:
        linear = [
            (c / 255 / 12.92) if c / 255 <= 0.03928 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in _channels(colour)
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_dark_theme_reaches_the_charts(page, server):
    """The system's dark setting opens the dashboard dark, charts included (light text on a dark
    background); switching to Light and back to Dark in the menu keeps every chart readable."""
    try:
        page.emulate_media(color_scheme="dark")
        open_and_check(page, f"{server}/gradients?selected_runs=adakd-demo", "Gradients", 2)
        assert not _light(page.evaluate(APP_BACKGROUND))
        colours = page.evaluate(CHART_COLOURS)
        assert colours and all(not _light(paper) and _contrast(font, paper) >= 3 for font, paper in colours), colours
        page.screenshot(path=str(SHOTS / "gradients-dark.png"))
        for theme, light in (("Light", True), ("Dark", False)):  # the menu's theme switcher: no rerun
            before = page.evaluate(APP_BACKGROUND)
            item = page.locator(f'[data-testid="stMainMenuItem-theme-{theme}"]')
            if not item.is_visible():  # the menu stays open after a theme is picked
                page.locator('[data-testid="stMainMenu"]').click()
            item.click()
            page.wait_for_function(f"() => ({APP_BACKGROUND})() !== {before!r}")
            settle(page)
            colours = page.evaluate(CHART_COLOURS)
            assert all(_light(paper) == light and _contrast(font, paper) >= 3 for font, paper in colours), (
                theme,
                colours,
            )
    finally:
        page.emulate_media(color_scheme="light")
        page.evaluate("() => window.localStorage.clear()")  # the menu's choice is kept by the browser


def test_start_on_the_train_page_watches_the_new_run(page, tmp_path):
    """Start a tiny smoke run from the Train page: the live panel switches from the run it was
    watching to the new one at once, and the training process is running. (Its logged steps
    reaching the panel, a stop and a resume are test_app.py's real-run test.) Its own server and
    runs folder, so the other tests' runs stay as they are (the module's browser tab)."""
    import signal

    from app import jobs

    root = tmp_path / "runs"
    make_run(root, "older", steps=3)  # the run watched before Start
    try:
        tab = page  # one Playwright per process: a second sync_playwright() inside the first fails
        with dashboard_server(root, tmp_path / "streamlit.log") as url:
            tab.goto(f"{url}/train")
            # waits on what each step changes: the page's live panel redraws on a timer, so it
            # never stays quiet long enough for settle()
            watching = tab.get_by_role("combobox", name="Watching")
            watching.wait_for()
            assert watching.input_value() == "older"
            tab.get_by_role("combobox", name=re.compile("Preset")).click()
            tab.get_by_role("option", name=re.compile(r"^smoke")).click()
            tab.get_by_role("textbox", name="Name").and_(tab.locator('[value^="smoke-"]')).wait_for()
            name = tab.get_by_role("textbox", name="Name")
            name.fill("from-the-browser")
            name.press("Enter")
            extra = tab.get_by_role("textbox", name=re.compile("More settings"))
            extra.fill("max_steps=40\nprobe_interval=0\neval_interval=0")
            extra.press("Control+Enter")
            command = tab.locator('[data-testid="stCode"]')
            command.filter(has_text="from-the-browser").filter(has_text="max_steps=40").wait_for()
            tab.get_by_role("button", name="Start", exact=True).click()
            tab.wait_for_function(  # at once: the panel follows the run just started
                """() => document.querySelector('input[aria-label="Watching"]').value === 'from-the-browser'"""
            )
            assert [Path(job.run_dir).name for job in jobs.list_jobs(root)] == ["from-the-browser"]
            assert tab.locator('[data-testid="stException"]').count() == 0
            tab.screenshot(path=str(SHOTS / "train-started.png"))
    finally:
        for job in jobs.list_jobs(root):  # never leave a training process behind
            jobs.stop(root, job, signal.SIGKILL)
