"""Export for reports: figures to PNG/SVG/PDF/HTML, data to CSV, and a report bundle (zip).

Static images go through Kaleido 1.x, which drives a headless Chrome/Chromium (it bundles none).
Kaleido's own sync server (``kaleido.start_sync_server``) waits on a queue with no deadline and
hangs for good when the browser fails to start, so this module runs Kaleido on a private event
loop thread instead (:class:`ExportServer`) where every wait has a deadline; on a timeout the
browser's whole process group is killed and :class:`ExportError` is raised — never a hang.

    fig_bytes = figure_to_bytes(fig, "svg")                    # one-shot (starts a browser)
    with ExportServer() as server:                              # a batch: one browser
        export_many(figs, "png", "out/", server=server)
    zip_bytes = analysis.bundle.report_bundle(figs, frames, runs, formats=("png", "html"))

HTML needs no browser: one figure's page embeds plotly.js (≈4.8 MB, opens offline); a batch
(export_many, the report bundle) writes plotly.js once as ``plotly.min.js`` beside its pages,
which load it by a relative path (still offline, as long as the files stay together).
SVGs get stable element ids (plotly.js draws a random one per render), so re-exporting an
unchanged figure gives the same bytes.
Finding the browser: ``BROWSER_PATH`` if set, else Kaleido's own search (its download folder,
``chrome``/``chromium`` on PATH, /usr/bin/chromium, ...). Install Debian's ``chromium`` if none.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import os
import re
import signal
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from adakd.runs.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("png", "svg", "pdf")
FORMATS = (*IMAGE_FORMATS, "html")
DEFAULT_TIMEOUT = 60.0
PLOTLY_JS = "plotly.min.js"  # the shared copy's file name in a batch of HTML pages

_INSTALL_HINT = (
    "Install Chrome/Chromium (Debian/Ubuntu: `apt-get install chromium`) or set BROWSER_PATH "
    "to its executable; HTML export works without a browser."
)


class ExportError(RuntimeError):
    """A figure could not be exported (no browser, a timeout, or a render failure)."""


def find_chromium() -> str | None:
    """Path of the browser Kaleido will use, or None. Same order as Kaleido/choreographer."""
    env_path = os.environ.get("BROWSER_PATH")
    if env_path:
        return env_path if _is_executable(env_path) else None
    try:
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - a broken search means "not found", reported by the caller
        logger.debug("choreographer browser search failed", exc_info=True)
        found = None
    return found if found and _is_executable(found) else None


def chromium_available() -> bool:
    """True when a Chrome/Chromium executable is there for PNG/SVG/PDF export."""
    return find_chromium() is not None


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _check_format(fmt: str) -> str:
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Thread body: serve the loop until stopped, then cancel what is left (bounded) and close."""
    asyncio.set_event_loop(loop)
    # An export cancelled on timeout leaves Kaleido tasks failing after the fact; log them
    # quietly instead of asyncio's "exception was never retrieved" dump on stderr.
    loop.set_exception_handler(lambda _loop, ctx: logger.debug("export loop: %s", ctx.get("message")))
    try:
        loop.run_forever()
    finally:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=0.5))
        loop.close()


class ExportServer:
    """One headless browser (a ``kaleido.Kaleido``) kept open for a batch of exports.

    Kaleido is asyncio code; it runs on a private event loop in a daemon thread so callers stay
    synchronous (Streamlit scripts, tests). ``start`` and ``render`` wait at most ``timeout``
    seconds; past that the browser process group is killed, the server is closed and
    :class:`ExportError` raised. A closed or failed server cannot be reused: make a new one.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, browser_path: str | None = None):
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self.browser_path = browser_path
        self._kaleido: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one render at a time: Kaleido is given one tab
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> ExportServer:
        if self._closed:
            raise ExportError("this export server was closed; create a new ExportServer")
        if self._loop is not None:
            return self
        path = self.browser_path or find_chromium()
        if path is None:
            env = os.environ.get("BROWSER_PATH")
            where = f"BROWSER_PATH={env!r} is not an executable file. " if env else ""
            raise ExportError(f"No Chrome/Chromium found for PNG/SVG/PDF export. {where}{_INSTALL_HINT}")
        self.browser_path = path
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=_run_loop, args=(self._loop,), name="adakd-export", daemon=True)
        self._thread.start()
        try:
            self._wait(self._open(path), self.timeout, what=f"starting the browser ({path})")
        except BaseException:
            self.close()
            raise
        # The browser runs in its own process group: make sure it goes when this process does.
        atexit.register(self.close)
        logger.info("export browser started: %s (pid %s)", path, self.pid)
        return self

    async def _open(self, path: str) -> None:
        import kaleido

        # mathjax=False: Kaleido would otherwise fetch MathJax from a CDN (offline machines hang).
        self._kaleido = kaleido.Kaleido(path=path, timeout=self.timeout, mathjax=False)
        await self._kaleido.open()

    @property
    def pid(self) -> int | None:
        """Process id of the browser launcher (its process group holds Chromium), if running."""
        proc = getattr(self._kaleido, "subprocess", None)
        return None if proc is None else proc.pid

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._closed

    def close(self, timeout: float = 10.0, *, join: bool = True) -> None:
        """Close the browser (politely, then by force) and stop the loop thread. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        loop, kaleido_obj = self._loop, self._kaleido
        if loop is None:
            return
        if kaleido_obj is not None and timeout > 0:
            try:
                asyncio.run_coroutine_threadsafe(kaleido_obj.close(), loop).result(timeout)
            except Exception as exc:  # noqa: BLE001 - fall through to the hard kill below
                logger.warning("export browser did not close cleanly (%s); killing it", type(exc).__name__)
        self._kill_browser()
        self._stop_loop(join)

    def _abort(self) -> None:
        """After a timeout: kill the browser's process group at once, then stop the loop.
        (Kaleido's polite close can itself wait on the stuck browser; its temp profile folder
        is removed when the Kaleido object is garbage-collected.)"""
        self._kill_browser()
        self.close(timeout=0, join=False)

    def _kill_browser(self) -> None:
        proc = getattr(self._kaleido, "subprocess", None)
        if proc is None or proc.poll() is not None:
            return
        try:  # choreographer starts the browser in its own session: kill the whole group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, AttributeError):
            proc.kill()
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            logger.warning("browser process %s did not exit after SIGKILL", proc.pid)

    def _stop_loop(self, join: bool = True) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(loop.stop)
        # After a kill, choreographer's clean-up keeps the loop busy ~2 s: the daemon thread
        # finishes (and closes its loop) on its own, the caller need not wait for it.
        if join:
            thread.join(timeout=10)
            if thread.is_alive():
                logger.warning("export loop thread did not stop; it is a daemon and ends with the process")

    def __enter__(self) -> ExportServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- work --------------------------------------------------------------------------------
    def _wait(self, coro: Any, timeout: float, what: str) -> Any:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except FutureTimeout:
            future.cancel()
            self._abort()
            raise ExportError(
                f"export timed out after {timeout:g} s while {what}; the browser was stopped. "
                "Try again, or a larger timeout for a very large figure."
            ) from None
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"export failed while {what}: {type(exc).__name__}: {exc}") from exc

    def render(
        self,
        fig: go.Figure,
        fmt: str,
        *,
        width: int | None = None,
        height: int | None = None,
        scale: float = 2,
        timeout: float | None = None,
    ) -> bytes:
        """Render one figure to PNG/SVG/PDF bytes (width/height default to the figure's own)."""
        fmt = _check_format(fmt)
        if fmt not in IMAGE_FORMATS:
            raise ValueError(f"the browser renders {IMAGE_FORMATS}; use figure_to_bytes for {fmt!r}")
        opts: dict[str, Any] = {"format": fmt, "scale": scale}
        if width:
            opts["width"] = width
        if height:
            opts["height"] = height
        spec = fig.to_dict() if hasattr(fig, "to_dict") else dict(fig)
        if fmt == "svg":  # traces without a uid get a random one in their class names: number them
            spec["data"] = [{"uid": f"t{i}", **trace} for i, trace in enumerate(spec.get("data", []))]
        with self._lock:
            if not self.running:
                self.start()
            data = self._wait(
                self._kaleido.calc_fig(spec, opts=opts),
                timeout or self.timeout,
                what=f"rendering a {fmt.upper()}",
            )
        return stable_svg_ids(data) if fmt == "svg" else data


def figure_to_bytes(
    fig: go.Figure,
    fmt: str,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float = 2,
    timeout: float = DEFAULT_TIMEOUT,
    server: ExportServer | None = None,
) -> bytes:
    """The figure as PNG, SVG or PDF (via Kaleido) or self-contained HTML bytes.

    Without ``server`` a browser is started for this one figure (≈1.5 s) and ``timeout``
    bounds the whole call; with a running :class:`ExportServer` only the render is timed.
    """
    fmt = _check_format(fmt)
    if fmt == "html":
        return figure_to_html(fig).encode("utf-8")
    if server is not None:
        return server.render(fig, fmt, width=width, height=height, scale=scale, timeout=timeout)
    with ExportServer(timeout=timeout) as one_shot:
        return one_shot.render(fig, fmt, width=width, height=height, scale=scale)


def figure_to_html(fig: go.Figure, shared_plotly_js: bool = False) -> str:
    """A full HTML page, interactive and offline: plotly.js embedded, or with
    ``shared_plotly_js`` loaded from ``plotly.min.js`` beside the page (plotly_js_bytes)."""
    return fig.to_html(include_plotlyjs=PLOTLY_JS if shared_plotly_js else True, full_html=True)


def plotly_js_bytes() -> bytes:
    """The plotly.js that plotly.py embeds (the same version the pages were made for)."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode("utf-8")


# plotly.js names each drawing's <defs>, clip paths, legend and gradients after a random
# 6-hex-digit id (fullLayout._uid); found from <defs id="defs-UID"> and replaced where it is used
_SVG_UID = re.compile(rb'<defs id="defs-([0-9a-f]{6})"')
_SVG_UID_USES = rb"(defs-|clip|legend|#g|\"g)"


def stable_svg_ids(svg: bytes) -> bytes:
    """The SVG with plotly.js's random id replaced by one derived from the drawing itself: the
    same figure gives the same bytes, two different figures still get different ids (so SVGs
    inlined in one HTML page keep their own clip paths). Anything else is returned unchanged."""
    found = _SVG_UID.search(svg)
    if found is None:
        return svg
    uses = re.compile(_SVG_UID_USES + re.escape(found.group(1)))
    template = uses.sub(rb"\1@UID@", svg)
    uid = hashlib.sha256(template).hexdigest()[:6].encode()
    return template.replace(b"@UID@", uid)


def frame_to_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV without the index (floats at full precision)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"frame_to_csv needs a pandas DataFrame, got {type(df).__name__}")
    return df.to_csv(index=False).encode("utf-8")


def safe_name(name: str) -> str:
    """A file-name-safe version of a figure/run name (letters, digits, '-', '_', '.')."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    if not cleaned:
        raise ValueError(f"{name!r} gives an empty file name; use letters or digits")
    return cleaned


def unique_file_names(names: Iterable[str]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for name in names:
        file_name = safe_name(name)
        if file_name in mapping.values():
            raise ValueError(f"two names map to the same file name {file_name!r}; rename one")
        mapping[name] = file_name
    return mapping


def normalise_formats(fmt: str | Sequence[str]) -> tuple[str, ...]:
    formats = (fmt,) if isinstance(fmt, str) else tuple(fmt)
    if not formats:
        raise ValueError("no export format given")
    return tuple(dict.fromkeys(_check_format(f) for f in formats))


def render_all(
    figs: Mapping[str, go.Figure],
    formats: Sequence[str],
    *,
    scale: float = 2,
    timeout: float = DEFAULT_TIMEOUT,
    server: ExportServer | None = None,
    shared_plotly_js: bool = False,
) -> dict[tuple[str, str], bytes]:
    """{(name, fmt): bytes} for every figure and format, with one browser for the whole batch;
    ``shared_plotly_js``: HTML pages load plotly.min.js from beside them (figure_to_html)."""
    formats = normalise_formats(formats)
    out: dict[tuple[str, str], bytes] = {}
    for name, fig in figs.items():
        if "html" in formats:
            out[(name, "html")] = figure_to_html(fig, shared_plotly_js).encode("utf-8")
    if not figs or not any(f in IMAGE_FORMATS for f in formats):
        return out
    own = server is None
    active = server if server is not None else ExportServer(timeout=timeout).start()
    try:
        for name, fig in figs.items():
            for fmt in formats:
                if fmt in IMAGE_FORMATS:
                    out[(name, fmt)] = active.render(fig, fmt, scale=scale, timeout=timeout)
    finally:
        if own:
            active.close()
    return out


def export_many(
    figs: Mapping[str, go.Figure],
    fmt: str | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    scale: float = 2,
    timeout: float = DEFAULT_TIMEOUT,
    server: ExportServer | None = None,
) -> dict[str, list[Path]]:
    """Write ``<out_dir>/<name>.<fmt>`` for each figure (one browser for the batch); HTML pages
    share one ``<out_dir>/plotly.min.js`` (written with them, not listed in the result).

    Files are written atomically (adakd/runs/atomic.py), so a failed export leaves no half file.
    Returns {name: [paths]}.
    """
    names = unique_file_names(figs)
    formats = normalise_formats(fmt)
    rendered = render_all(figs, formats, scale=scale, timeout=timeout, server=server, shared_plotly_js=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if figs and "html" in formats:  # first, so no page is ever there without its plotly.js
        write_bytes_atomic(out / PLOTLY_JS, plotly_js_bytes())
    written: dict[str, list[Path]] = {name: [] for name in figs}
    for (name, f), data in rendered.items():
        path = out / f"{names[name]}.{f}"
        write_bytes_atomic(path, data)
        written[name].append(path)
    return written
