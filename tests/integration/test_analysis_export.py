"""Export: each format is a valid file, the bundle round-trips, a timeout never hangs.

Browser renders share one ExportServer (module fixture): starting Chromium costs ≈1.5 s.
Tests that need the browser skip with a reason where no Chrome/Chromium is installed.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import xml.etree.ElementTree as ET
import zipfile

import pandas as pd
import plotly
import plotly.graph_objects as go
import pytest

from analysis.bundle import read_bundle, report_bundle
from analysis.export import (
    PLOTLY_JS,
    ExportError,
    ExportServer,
    chromium_available,
    export_many,
    figure_to_bytes,
    frame_to_csv,
    plotly_js_bytes,
)

needs_browser = pytest.mark.skipif(
    not chromium_available(),
    reason="no Chrome/Chromium for Kaleido (install Debian's `chromium` or set BROWSER_PATH)",
)


def _figure(name: str = "difficulty-trace") -> go.Figure:
    fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[0.25, 0.5, 0.125], name=name, mode="lines+markers"))
    fig.update_layout(title="export test", xaxis_title="step", yaxis_title="difficulty")
    return fig


@pytest.fixture(scope="module")
def server():
    if not chromium_available():
        pytest.skip("no Chrome/Chromium for Kaleido (install Debian's `chromium` or set BROWSER_PATH)")
    with ExportServer(timeout=60) as srv:
        yield srv


def _process_gone(pid: int, wait: float = 5.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # an unreaped child still answers kill(0): a zombie counts as gone
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------------------- single formats
@needs_browser
def test_png_has_magic_bytes_and_requested_size(server):
    data = figure_to_bytes(_figure(), "png", width=400, height=300, scale=1, server=server)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR chunk: width and height as big-endian uint32 at bytes 16..24
    assert int.from_bytes(data[16:20], "big") == 400
    assert int.from_bytes(data[20:24], "big") == 300


@needs_browser
def test_scale_multiplies_png_pixels(server):
    data = figure_to_bytes(_figure(), "png", width=200, height=100, scale=2, server=server)
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (400, 200)


@needs_browser
def test_svg_parses_and_contains_the_axis_title(server):
    data = figure_to_bytes(_figure(), "svg", server=server)
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    assert b"<svg" in data[:200]
    assert "difficulty" in data.decode("utf-8")


@needs_browser
def test_pdf_has_magic_bytes(server):
    data = figure_to_bytes(_figure(), "pdf", server=server)
    assert data.startswith(b"%PDF-")
    assert b"%%EOF" in data[-1024:]


def test_html_is_self_contained_and_holds_the_trace():
    html = figure_to_bytes(_figure("my-special-trace"), "html").decode("utf-8")
    assert html.lstrip().lower().startswith("<html") or "<!doctype html>" in html[:100].lower()
    assert "my-special-trace" in html and "0.125" in html  # the trace name and its data
    # plotly.js embedded (megabytes), no external <script src=...> to fetch
    assert len(html) > 1_000_000 and not re.search(r"<script[^>]*\bsrc=", html)


def test_unknown_format_is_a_clear_error():
    with pytest.raises(ValueError, match="png, svg, pdf, html"):
        figure_to_bytes(_figure(), "gif")


def test_csv_round_trips_a_frame():
    df = pd.DataFrame({"token": ["a", "b,c", 'say "hi"'], "difficulty": [0.1, 0.123456789012, 1.0]})
    back = pd.read_csv(io.BytesIO(frame_to_csv(df)))
    pd.testing.assert_frame_equal(back, df)


# ---------------------------------------------------------------------------- batches
@needs_browser
def test_export_many_writes_each_file_with_one_browser(server, tmp_path):
    figs = {"fig 1/a": _figure("a"), "fig2": _figure("b")}
    written = export_many(figs, ("png", "svg", "html"), tmp_path, server=server)
    names = sorted(p.name for paths in written.values() for p in paths)
    assert names == ["fig2.html", "fig2.png", "fig2.svg", "fig_1_a.html", "fig_1_a.png", "fig_1_a.svg"]
    assert (tmp_path / "fig2.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp"))  # temp + rename leaves nothing behind
    assert server.running  # a given server stays open for the caller


def test_html_pages_of_a_batch_share_one_plotly_js(tmp_path):
    """A bundle of three HTML figures holds plotly.js once (not 3 x 4.8 MB), each page loads it
    by a relative path and keeps its own data; export_many writes it beside the pages."""
    figs = {f"fig{i}": _figure(f"trace-{i}") for i in range(3)}
    data = report_bundle(figs, {}, [], formats=("html",))
    zf = zipfile.ZipFile(io.BytesIO(data))
    library = zf.read(f"figures/{PLOTLY_JS}")
    assert library == plotly_js_bytes() and len(library) > 1_000_000
    assert sum(info.file_size for info in zf.infolist()) < len(library) + 3 * 100_000
    for i in range(3):
        page = zf.read(f"figures/fig{i}.html").decode("utf-8")
        assert f'<script charset="utf-8" src="{PLOTLY_JS}"></script>' in page and f"trace-{i}" in page
    assert set(read_bundle(data)["figures"]) == set(figs)  # the library is not read as a figure
    assert f"figures/{PLOTLY_JS}" in read_bundle(data)["readme"]

    written = export_many(figs, "html", tmp_path)
    assert (tmp_path / PLOTLY_JS).read_bytes() == library and len(written) == 3


@needs_browser
def test_svg_ids_are_stable_across_renders_and_distinct_between_figures(server):
    """plotly.js names clip paths after a random id per render: replaced by one derived from
    the drawing, the same figure renders to the same bytes; another figure gets another id."""
    first = server.render(_figure("a"), "svg")
    assert server.render(_figure("a"), "svg") == first
    ET.fromstring(first)  # still well-formed
    other = server.render(_figure("a").update_layout(title="another drawing"), "svg")

    def uid(svg: bytes) -> bytes:
        found = re.search(rb'<defs id="defs-([0-9a-f]{6})"', svg)
        assert found is not None
        return found.group(1)

    assert uid(first) != uid(other)
    assert first.count(b"clip" + uid(first)) >= 2  # defined and referenced under the new id


def test_export_many_rejects_names_that_collide(tmp_path):
    with pytest.raises(ValueError, match="same file name"):
        export_many({"a b": _figure(), "a/b": _figure()}, "html", tmp_path)


def _run_dir(root, name, seed, state="finished", config_text=None):
    run = root / name
    run.mkdir(parents=True)
    config = {
        "format": 1,
        "name": name,
        "seed": seed,
        "git_revision": "abc123",
        "versions": {"torch": "2.13.0"},
        "config": {"seed": seed, "divergence": "rkl"},
    }
    (run / "config.json").write_text(config_text if config_text is not None else json.dumps(config))
    (run / "status.json").write_text(json.dumps({"state": state, "step": 10, "total_steps": 10}))
    return run


@needs_browser
def test_report_bundle_round_trips(server, tmp_path):
    runs = [_run_dir(tmp_path / "runs", "demo", seed=7), _run_dir(tmp_path / "sample_runs", "demo", seed=8)]
    frame = pd.DataFrame({"step": [0, 1, 2], "difficulty": [0.25, 0.5, 0.125]})
    out_path = tmp_path / "out" / "bundle.zip"
    data = report_bundle(
        {"fig1": _figure("trace-one")},
        {"fig1": frame},
        runs,
        formats=("png", "svg", "pdf", "html"),
        out_path=out_path,
        server=server,
    )
    assert out_path.read_bytes() == data
    bundle = read_bundle(data)
    assert set(bundle["figures"]["fig1"]) == {"png", "svg", "pdf", "html"}
    assert bundle["figures"]["fig1"]["png"][:4] == b"\x89PNG"
    assert bundle["figures"]["fig1"]["pdf"][:5] == b"%PDF-"
    assert "trace-one" in bundle["figures"]["fig1"]["html"].decode("utf-8")
    pd.testing.assert_frame_equal(bundle["data"]["fig1"], frame)
    # two runs with the same folder name stay apart; files are the runs' own
    assert set(bundle["runs"]) == {"demo", "demo-2"}
    assert bundle["runs"]["demo"]["config.json"]["seed"] == 7
    assert bundle["runs"]["demo-2"]["status.json"]["state"] == "finished"
    prov = bundle["provenance"]
    assert prov["seeds"] == {"demo": 7, "demo-2": 8}
    assert prov["versions"]["plotly"] == plotly.__version__
    assert {"created_at", "git_revision", "versions", "runs"} <= set(prov)
    for arc in ("figures/fig1.png", "data/fig1.csv", "runs/demo/config.json", "provenance.json"):
        assert arc in bundle["readme"]


def test_bundle_without_images_needs_no_browser_and_reports_damaged_files(tmp_path):
    run = _run_dir(tmp_path, "broken", seed=1, config_text="{not json")
    data = report_bundle({"f": _figure()}, {"f": pd.DataFrame({"x": [1]})}, [run], formats=("html",))
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "runs/broken/config.json" not in names and "runs/broken/status.json" in names
    bundle = read_bundle(data)
    assert "config.json unreadable" in bundle["readme"]
    assert bundle["provenance"]["runs"][0]["seed"] is None


def test_bundle_rejects_a_missing_run_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        report_bundle({}, {}, [tmp_path / "nope"], formats=("html",))


# ---------------------------------------------------------------------------- failure paths
@needs_browser
def test_start_timeout_raises_export_error_without_hanging():
    srv = ExportServer(timeout=0.05)
    started = time.monotonic()
    with pytest.raises(ExportError, match="timed out after 0.05 s while starting the browser"):
        srv.start()
    assert time.monotonic() - started < 5  # never a hang
    assert not srv.running
    if srv.pid is not None:  # the browser had been launched: its process must be gone
        assert _process_gone(srv.pid)


@needs_browser
def test_render_timeout_kills_the_browser_and_closes_the_server():
    srv = ExportServer(timeout=60).start()
    pid = srv.pid
    assert pid is not None
    started = time.monotonic()
    with pytest.raises(ExportError, match=r"timed out after 0.001 s while rendering a PNG"):
        srv.render(_figure(), "png", timeout=0.001)
    assert time.monotonic() - started < 5
    assert _process_gone(pid) and not srv.running
    with pytest.raises(ExportError, match="closed"):
        srv.render(_figure(), "png")


def test_missing_browser_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")
    assert not chromium_available()
    with pytest.raises(ExportError, match=r"BROWSER_PATH='/nonexistent/chromium'.*apt-get install chromium"):
        figure_to_bytes(_figure(), "png")
    # HTML still works without a browser
    assert b"<html" in figure_to_bytes(_figure(), "html")[:200].lower()


def test_closed_server_refuses_work():
    srv = ExportServer(timeout=5)
    srv.close()
    with pytest.raises(ExportError, match="closed"):
        srv.render(_figure(), "png")


@needs_browser
def test_one_shot_export_stops_its_own_browser(monkeypatch):
    pids = []
    original_close = ExportServer.close

    def spy_close(self, *args, **kwargs):
        pids.append(self.pid)
        return original_close(self, *args, **kwargs)

    monkeypatch.setattr(ExportServer, "close", spy_close)
    assert figure_to_bytes(_figure(), "svg", timeout=60).lstrip().startswith(b"<svg")
    assert pids and pids[0] is not None and _process_gone(pids[0])
