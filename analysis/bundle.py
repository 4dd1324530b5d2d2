"""Report bundle: chosen figures + their data + the runs' config/status + provenance, as a zip.

    zip_bytes = report_bundle({"fig3a": fig}, {"fig3a": frame}, ["runs/demo"], formats=("png", "html"))
    contents = read_bundle(zip_bytes)          # the round trip: figures, data, runs, provenance

Images are rendered by :mod:`analysis.export` with one browser for the whole bundle. The
provenance records this checkout (git revision, package versions, creation time) and, per run,
what the run itself recorded (seed, git revision, versions, device, state).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import platform
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from adakd.runs.atomic import write_bytes_atomic
from adakd.runs.provenance import git_revision
from adakd.runs.timestamps import utc_now
from analysis.export import (
    DEFAULT_TIMEOUT,
    PLOTLY_JS,
    ExportServer,
    frame_to_csv,
    normalise_formats,
    plotly_js_bytes,
    render_all,
    safe_name,
    unique_file_names,
)


def report_bundle(
    figures: Mapping[str, go.Figure],
    frames: Mapping[str, pd.DataFrame],
    runs: Sequence[str | os.PathLike] = (),
    formats: Sequence[str] = ("png", "svg", "html"),
    out_path: str | os.PathLike | None = None,
    *,
    scale: float = 2,
    timeout: float = DEFAULT_TIMEOUT,
    server: ExportServer | None = None,
) -> bytes:
    """A zip for a report: figures in ``formats``, their data as CSV, each run's config/status.

    Layout::

        README.txt                     manifest: every file and what it is
        provenance.json                created_at, package versions, git revision, runs + seeds
        figures/<name>.<fmt>           each figure in each chosen format
        figures/plotly.min.js          one plotly.js for every HTML figure (they load it from beside them)
        data/<name>.csv                each frame
        runs/<run>/config.json         as written by the trainer (when present)
        runs/<run>/status.json

    Returns the zip bytes; with ``out_path`` also writes them there (temp + rename).
    """
    formats = normalise_formats(formats)
    figure_names = unique_file_names(figures)
    frame_names = unique_file_names(frames)
    run_files = read_run_files(runs)
    rendered = render_all(figures, formats, scale=scale, timeout=timeout, server=server, shared_plotly_js=True)

    manifest: list[tuple[str, str]] = []
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for (name, fmt), data in sorted(rendered.items(), key=lambda kv: (figure_names[kv[0][0]], kv[0][1])):
            arc = f"figures/{figure_names[name]}.{fmt}"
            zf.writestr(arc, data)
            manifest.append((arc, f"figure {name!r} as {fmt.upper()}"))
        if any(fmt == "html" for _, fmt in rendered):
            arc = f"figures/{PLOTLY_JS}"
            zf.writestr(arc, plotly_js_bytes())
            manifest.append((arc, "plotly.js, loaded by every HTML figure (keep it beside them)"))
        for name, frame in frames.items():
            arc = f"data/{frame_names[name]}.csv"
            zf.writestr(arc, frame_to_csv(frame))
            manifest.append((arc, f"data {name!r}: {len(frame)} rows x {frame.shape[1]} columns"))
        for run in run_files:
            for file_name, content in run["files"].items():
                arc = f"runs/{run['bundle_name']}/{file_name}"
                zf.writestr(arc, content)
                manifest.append((arc, f"run {run['name']!r} {file_name}"))
        prov = provenance(run_files, figures=list(figures), frames=list(frames), formats=list(formats))
        zf.writestr("provenance.json", json.dumps(prov, indent=2, sort_keys=True, default=str))
        manifest.append(("provenance.json", "package versions, git revision, seeds, creation time"))
        zf.writestr("README.txt", _readme(manifest, prov, run_files))
    data = buffer.getvalue()
    if out_path is not None:
        target = Path(out_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
    return data


def _readme(manifest: list[tuple[str, str]], prov: dict, run_files: list[dict]) -> str:
    lines = [
        "AdaKD report bundle",
        f"created {prov['created_at']}, git revision {prov.get('git_revision') or 'unknown'}",
        "",
        "Files:",
        *(f"  {arc:<48} {what}" for arc, what in manifest),
        "  README.txt                                       this manifest",
    ]
    missing = [(r["name"], m) for r in run_files for m in r["missing"]]
    if missing:
        lines += ["", "Missing or unreadable run files:", *(f"  {n}: {m}" for n, m in missing)]
    return "\n".join(lines) + "\n"


def read_bundle(data: bytes) -> dict[str, Any]:
    """Open a :func:`report_bundle` zip: {"readme", "provenance", "figures", "data", "runs"}.

    ``figures`` is {name: {fmt: bytes}}, ``data`` {name: DataFrame}, ``runs``
    {run: {file name: parsed JSON}} — names as they are in the zip (file-name-safe).
    """
    out: dict[str, Any] = {"readme": "", "provenance": {}, "figures": {}, "data": {}, "runs": {}}
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for arc in zf.namelist():
            content = zf.read(arc)
            parts = arc.split("/")
            if arc == "README.txt":
                out["readme"] = content.decode("utf-8")
            elif arc == "provenance.json":
                out["provenance"] = json.loads(content)
            elif arc == f"figures/{PLOTLY_JS}":
                continue  # the HTML figures' shared library, not a figure
            elif parts[0] == "figures" and len(parts) == 2:
                stem, _, fmt = parts[1].rpartition(".")
                out["figures"].setdefault(stem, {})[fmt] = content
            elif parts[0] == "data" and len(parts) == 2:
                out["data"][parts[1].removesuffix(".csv")] = _read_csv(content)
            elif parts[0] == "runs" and len(parts) == 3:
                out["runs"].setdefault(parts[1], {})[parts[2]] = json.loads(content)
    return out


def _read_csv(content: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(content))
    except pd.errors.EmptyDataError:  # a frame with no columns writes an empty file
        return pd.DataFrame()


# -- provenance ------------------------------------------------------------------------------
_PACKAGES = (
    "adakd",
    "torch",
    "transformers",
    "numpy",
    "pandas",
    "plotly",
    "kaleido",
    "captum",
    "streamlit",
    "safetensors",
    "tokenizers",
)
_RUN_FILES = ("config.json", "status.json")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a figure depends on (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def read_run_files(runs: Sequence[str | os.PathLike]) -> list[dict[str, Any]]:
    """For each run directory: its name, a unique name for the bundle, the raw bytes of
    config.json/status.json that parse as JSON, the parsed config and what is missing."""
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    for run in runs:
        path = Path(run)
        if not path.is_dir():
            raise ValueError(f"run directory {str(path)!r} does not exist")
        bundle_name, n = safe_name(path.name), 1
        while bundle_name in used:  # e.g. runs/demo and sample_runs/demo
            n += 1
            bundle_name = f"{safe_name(path.name)}-{n}"
        used.add(bundle_name)
        entry: dict[str, Any] = {
            "name": path.name,
            "path": str(path.resolve()),
            "bundle_name": bundle_name,
            "files": {},
            "parsed": {},
            "missing": [],
        }
        for file_name in _RUN_FILES:
            try:
                raw = (path / file_name).read_bytes()
                entry["parsed"][file_name] = json.loads(raw)
                entry["files"][file_name] = raw
            except FileNotFoundError:
                entry["missing"].append(f"{file_name} missing")
            except (OSError, ValueError) as err:
                entry["missing"].append(f"{file_name} unreadable ({err})")
        out.append(entry)
    return out


def _as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def provenance(run_files: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """Where a bundle came from: creation time, this checkout's git revision and package
    versions, and per run its seed, git revision, versions and state as the run recorded them."""
    runs = []
    for run in run_files:
        config = _as_dict(run["parsed"].get("config.json"))
        status = _as_dict(run["parsed"].get("status.json"))
        inner = _as_dict(config.get("config"))
        runs.append(
            {
                "name": run["name"],
                "bundle_name": run["bundle_name"],
                "path": run["path"],
                "seed": config.get("seed", inner.get("seed")),
                "preset": config.get("preset"),
                "git_revision": config.get("git_revision"),
                "versions": config.get("versions"),
                "device": config.get("device"),
                "dtype": config.get("dtype"),
                "state": status.get("state"),
                "step": status.get("step"),
                "missing": run["missing"],
            }
        )
    return {
        "created_at": utc_now(),
        "git_revision": git_revision(),
        "versions": package_versions(),
        "seeds": {r["bundle_name"]: r["seed"] for r in runs},
        "runs": runs,
        **extra,
    }
