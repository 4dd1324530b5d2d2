"""Sweeps: a grid over RunConfig values, run one after another into sibling run directories.

    python -m adakd sweep --preset demo --grid idts_c=0.1,0.3,0.5,0.7,0.9 --grid seed=0,1,2
    python -m adakd sweep --preset demo --grid ablation          # base / +IDTS / +LATF / full
    python -m adakd sweep --preset demo --grid table1            # paper Table 1, ± AdaKD, SFT (11 runs)
    python -m adakd sweep --preset demo --grid table3            # Table 3 indicators (also table4, table5)

Layout: ``<root>/<name>/sweep.json`` (the manifest, rewritten atomically after every state
change) and one run directory per grid point beside it, named from the point's values in grid
order, e.g. ``<root>/<name>/idts_c=0.1,seed=0``.

Each point runs as its own ``python -m adakd train`` (or ``resume``) subprocess rather than
in-process: a point that crashes hard (out of memory, a segfault in a kernel, a leaked CUDA
context) cannot take the sweep down or poison the next point, every point starts from the same
fresh interpreter state (bit-identical to running it by hand), memory is returned between
points, and it is exactly the process the CLI and the dashboard start.

Resuming: running the same sweep again skips points whose run finished, resumes points that
stopped or crashed with a checkpoint, and restarts points that left no checkpoint. Ctrl-C or
SIGTERM stops the current point cleanly (checkpoint, state "stopped") and ends the sweep.
"The same sweep" means the same points with the same configs (an override that spells out what
the preset now holds changes nothing); a finished or resumable point whose recorded config.json
differs from the config the sweep gives now (say, the preset changed since) stops the sweep before
anything runs, so one folder never mixes two recipes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

from adakd.config import RunConfig, apply_overrides, parse_overrides
from adakd.presets import TABLES
from adakd.runs.rundir import RunDir, check_run_name, read_json, recorded_config, write_json_atomic
from adakd.runs.runlock import run_lock
from adakd.runs.timestamps import utc_now

log = logging.getLogger(__name__)

MANIFEST = "sweep.json"
# Named grids: one axis whose values are override sets. Values: the ablation's four arms;
# table1: the paper's Table 1 methods, plain and with AdaKD, and SFT (adakd.presets.TABLE1);
# table3 / table4 / table5: the indicator, ratio-schedule and temperature arms (adakd.presets).
NAMED_GRIDS: dict[str, dict[str, dict[str, str]]] = {
    "ablation": {
        "base": {"latf": "off", "idts": "off"},
        "idts": {"latf": "off", "idts": "on"},
        "latf": {"latf": "adaptive", "idts": "off"},
        "full": {"latf": "adaptive", "idts": "on"},
    },
    **{
        table: {
            arm: {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in fields.items()}
            for arm, fields in arms.items()
        }
        for table, arms in TABLES.items()
    },
}


# ---------------------------------------------------------------------- grids
def _split_values(raw: str) -> list[str]:
    """Split on top-level commas; brackets/braces group, so list fields take JSON values:
    ``student_layers=[0,29],[0,10,29]`` -> ``["[0,29]", "[0,10,29]"]``."""
    values, depth, current = [], 0, ""
    for ch in raw:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += ch
    values.append(current.strip())
    return values


def parse_grid(specs: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``--grid`` strings into an ordered axis -> values mapping.

    ``"idts_c=0.1,0.3"`` -> ``{"idts_c": ["0.1", "0.3"]}``: keys are RunConfig field names
    (no aliases: ``c`` is ``idts_c``); values are checked against the field's type here, their
    ranges when the configs are built. A named grid alone (``"ablation"``) or with a subset of
    its values (``"ablation=base,full"``) is an axis of override sets, see ``NAMED_GRIDS``.
    Axes multiply (Cartesian product) in the order given.
    """
    if isinstance(specs, str):
        specs = [specs]
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if key in NAMED_GRIDS:
            arms = NAMED_GRIDS[key]
            values = _split_values(raw) if sep else list(arms)
            unknown = [v for v in values if v not in arms]
            if unknown:
                raise ValueError(
                    f"grid {key!r}: unknown value(s) {', '.join(map(repr, unknown))}; valid: {', '.join(arms)}"
                )
        else:
            if not sep or not raw.strip():
                raise ValueError(
                    f"grid {spec!r} is not of the form field=v1,v2,... or a named grid ({', '.join(NAMED_GRIDS)})"
                )
            values = _split_values(raw)
            if any(not v for v in values):
                raise ValueError(f"grid {spec!r} has an empty value")
            for value in values:  # unknown field -> error listing the fields; bad type -> error
                parse_overrides([f"{key}={value}"])
        if key in grid:
            raise ValueError(f"grid axis {key!r} is given twice; list all its values in one --grid")
        if len(set(values)) != len(values):
            raise ValueError(f"grid {spec!r} repeats a value")
        grid[key] = values
    if not grid:
        raise ValueError("the grid is empty: give at least one --grid field=v1,v2")
    return grid


def _point_overrides(axes: Mapping[str, str]) -> dict[str, str]:
    """Field overrides of one grid point (named-grid arms expanded)."""
    overrides: dict[str, str] = {}
    for key, value in axes.items():
        for field, v in (NAMED_GRIDS[key][value] if key in NAMED_GRIDS else {key: value}).items():
            if field in overrides:
                raise ValueError(f"grid axes set {field!r} twice (via {key!r}); drop one axis")
            overrides[field] = v
    return overrides


def _name_part(value: str) -> str:
    """A folder-safe rendering of one value (a path contributes its file name)."""
    if "/" in value or "\\" in value:
        value = re.split(r"[/\\]", value.rstrip("/\\"))[-1] or "path"
    return re.sub(r"[^A-Za-z0-9._+@-]", "-", value)[:40]


def expand_grid(grid: Mapping[str, list[str]]) -> list[tuple[str, dict[str, str]]]:
    """All grid points in order as (run name, field overrides); names are unique."""
    points: list[tuple[str, dict[str, str]]] = []
    seen: dict[str, int] = {}
    for combo in itertools.product(*grid.values()):
        axes = dict(zip(grid.keys(), combo, strict=True))
        name = ",".join(f"{k}={_name_part(v)}" for k, v in axes.items())
        if name in seen:  # two paths with the same file name: disambiguate, still deterministic
            seen[name] += 1
            name = f"{name}-{seen[name]}"
        else:
            seen[name] = 1
        points.append((check_run_name(name), _point_overrides(axes)))
    return points


def build_config(preset: str | None, overrides: Mapping[str, str]) -> RunConfig:
    """The RunConfig of a point: preset values, then ``key=value`` overrides (validated)."""
    base = RunConfig()
    if preset is not None:
        from adakd.presets import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid: {', '.join(PRESETS)}")
        base = RunConfig.from_dict(dict(PRESETS[preset]))
    return apply_overrides(base, [f"{k}={v}" for k, v in overrides.items()])


# ---------------------------------------------------------------------- running
def _as_overrides(base_overrides) -> dict[str, str]:
    if not base_overrides:
        return {}
    if isinstance(base_overrides, Mapping):
        return {str(k): str(v) for k, v in base_overrides.items()}
    out = {}
    for item in base_overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = value.strip()
    return out


def _has_checkpoint(run: RunDir) -> bool:
    return run.checkpoints.is_dir() and any(
        p.name.startswith("step-") and not p.name.endswith(".tmp") for p in run.checkpoints.iterdir()
    )


def _command(action: str, run: RunDir, preset: str | None, overrides: Mapping[str, str]) -> list[str]:
    if action == "resume":
        return [sys.executable, "-m", "adakd", "resume", str(run.path)]
    cmd = [sys.executable, "-m", "adakd", "train", "--run-dir", str(run.path)]
    if preset is not None:
        cmd += ["--preset", preset]
    for key, value in overrides.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def run_sweep(preset: str | None, grid, base_overrides, root, name: str) -> Path:
    """Run every grid point (see module docstring); returns the sweep folder.

    preset: a name in ``adakd.presets.PRESETS`` (or None for RunConfig defaults);
    grid: ``parse_grid`` output or the ``--grid`` strings; base_overrides: ``key=value``
    strings (or a dict) applied to every point before the point's own values (a key may not
    be both a base override and a grid field); root/name: the sweep folder ``root/name``.
    Every point's config is validated before the first one starts. A second call with the
    same arguments resumes; with different ones it raises (use a new name).
    """
    grid = parse_grid(grid) if not isinstance(grid, Mapping) else {k: list(v) for k, v in grid.items()}
    base = _as_overrides(base_overrides)
    folder = Path(root) / check_run_name(name)
    points = expand_grid(grid)
    for _run_name, point in points:
        clash = sorted(set(point) & set(base))
        if clash:
            raise ValueError(f"{', '.join(clash)} is both a base override and varied by the grid; drop one")
        build_config(preset, {**base, **point})  # fail fast on any invalid point

    manifest = {
        "format": 1,
        "preset": preset,
        "grid": grid,
        "base_overrides": base,
        "runs": [{"name": n, "overrides": p, "state": "pending"} for n, p in points],
    }
    previous = read_json(folder / MANIFEST)
    if previous is not None:
        if _point_configs(previous) != _point_configs(manifest):
            raise ValueError(f"{folder} holds a different sweep (its points' configs differ); choose another name")
        manifest = previous
    folder.mkdir(parents=True, exist_ok=True)

    def save(entry: dict, state: str, error: str | None = None) -> None:
        entry["state"], entry["updated_at"] = state, utc_now()
        entry.pop("error", None)
        if error:
            entry["error"] = error
        write_json_atomic(folder / MANIFEST, manifest)

    for entry in manifest["runs"]:  # before anything runs: a skipped or resumed point must be this sweep's
        differences = recorded_differences(folder / entry["name"], build_config(preset, {**base, **entry["overrides"]}))
        if differences:
            raise ValueError(
                f"{folder / entry['name']} was made with another config than this sweep gives now "
                f"({'; '.join(differences)}), e.g. because the preset changed since: sweep into another "
                "--root or --name"
            )
    write_json_atomic(folder / MANIFEST, manifest)
    for entry in manifest["runs"]:
        run = RunDir(folder / entry["name"])
        state = run.effective_state() if run.path.exists() else "absent"
        if state == "finished":
            if entry.get("state") != "finished":  # a resume skips it; its time stays when it finished
                save(entry, "finished")
            continue
        if state == "running":  # another live process owns it
            raise RuntimeError(
                f"{run.path} is being trained by pid {(run.read_status() or {}).get('pid')}; "
                "wait for it or stop it before resuming the sweep"
            )
        action = "train"
        if run.path.exists():
            if _has_checkpoint(run):
                action = "resume"
            else:  # nothing saved to continue from: start the point again
                log.warning("%s (%s) has no checkpoint; starting it again", run.path, state)
                with run_lock(run.path, create=False):  # never from under a process writing it
                    shutil.rmtree(run.path)
        save(entry, "running")
        log.info("sweep %s: %s %s", name, action, entry["name"])
        with _sigterm_as_interrupt():
            try:
                returncode = _run_point(_command(action, run, preset, {**base, **entry["overrides"]}))
            except KeyboardInterrupt:
                # The signal may reach the sweep just after its point finished (one pkill / Ctrl-C
                # for the process group): record what the run's own status says, not "stopped".
                finished = run.effective_state() == "finished"
                save(entry, "finished" if finished else "stopped")
                log.warning("sweep %s interrupted at %s; run it again to resume", name, entry["name"])
                raise
        state = run.effective_state()
        if returncode == 0 and state == "finished":
            save(entry, "finished")
        elif state == "stopped" or returncode in (-signal.SIGINT, 130):
            save(entry, "stopped")
            log.warning("sweep %s stopped at %s; run it again to resume", name, entry["name"])
            break
        else:
            status = run.read_status() or {}
            save(entry, "failed", status.get("error") or f"exit code {returncode}")
            log.error("sweep %s: %s failed; continuing with the next point", name, entry["name"])
    return folder


def _point_configs(manifest: dict) -> dict[str, dict]:
    """name -> the config each point of a sweep manifest stands for. Two manifests with the same
    points are the same sweep even when one spells out in overrides what the other's preset holds."""
    try:
        return {
            entry["name"]: build_config(
                manifest.get("preset"), {**manifest.get("base_overrides", {}), **entry["overrides"]}
            ).to_dict()
            for entry in manifest.get("runs", [])
        }
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"sweep manifest is damaged or from another version ({err}); choose another name") from None


# Fields whose value does not change what a run measures, so a point recorded with another value
# is still the same point: loss_input gives the same loss and gradient up to float rounding
# (docs/method.md §10; runs made before the field existed record "logits").
RESULT_NEUTRAL_FIELDS = frozenset({"loss_input"})


def recorded_differences(run_dir: Path, expected: RunConfig) -> list[str]:
    """``"lr 0.001 (now 0.0001)"`` for each field where the run recorded in ``run_dir`` differs from
    ``expected`` (RESULT_NEUTRAL_FIELDS aside); empty when they agree or nothing is recorded yet."""
    fields = recorded_config(Path(run_dir))
    if fields is None:
        return []  # a point that never got as far as its config.json is trained afresh
    recorded = RunConfig.from_record(fields).to_dict()
    return [
        f"{key} {recorded.get(key)!r} (now {value!r})"
        for key, value in expected.to_dict().items()
        if key not in RESULT_NEUTRAL_FIELDS and recorded.get(key) != value
    ]


def _run_point(command: list[str]) -> int:
    """Run one point to its end; on Ctrl-C / SIGTERM let it stop cleanly, then re-raise.

    The child is asked to stop with SIGTERM (the trainer finishes the step, checkpoints and
    marks the run stopped; unlike a second SIGINT it never escalates, so it is safe when the
    terminal already sent the child its own SIGINT). A second interrupt kills the child.
    """
    proc = subprocess.Popen(command)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
        raise


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """SIGTERM to the sweep (e.g. from the dashboard) stops it like Ctrl-C (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
