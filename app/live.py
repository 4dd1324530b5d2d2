"""The Train page's live panel: queue, progress, loss / r curves and τ histogram of one run.

It is a fragment that reruns itself every `REFRESH_SECONDS`: it only reads the run directory
and the job files (the training process never calls Streamlit), so refreshing costs a few
file reads and one or two small charts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from app import components as ui
from app import jobs, state
from app.eta import eta_seconds
from app.train_form import sweep_args

REFRESH_SECONDS = 2.0
WATCH = "train-watch"  # session key: the run (or sweep folder) shown in the live panel
WATCH_SELECT = "train-watch-select"  # the "Watching" select box's key
STOPPING = "train-stopping"  # session key: ids of the jobs whose Stop was pressed (until they end)


def watch(run_dir: str) -> None:
    """Make the live panel show `run_dir` on its next run (the Train page's Start does this)."""
    st.session_state[WATCH] = run_dir
    st.session_state[WATCH_SELECT] = run_dir


def _tail(path: Path, lines: int = 30) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16_000))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _own_runs(root: Path) -> list[str]:
    table = state.list_runs()
    if table.empty:
        return []
    own = table[~table["is_sample"].astype(bool)]
    return own["path"].astype(str).tolist()


def _watch_options(root: Path, live: list[jobs.Job]) -> list[str]:
    options = [j.run_dir for j in live]
    # starts that failed before their run directory existed: their output is the only trace
    options += [
        j.run_dir
        for j in reversed(jobs.list_jobs(root, include_exited=True))
        if not j.live and not Path(j.run_dir).exists()
    ]
    for path in _own_runs(root):
        parent = str(Path(path).parent)
        if parent != str(root) and (Path(parent) / "sweep.json").exists():
            path = parent  # runs of a sweep are watched through their sweep folder
        options.append(path)
    if st.session_state.get(WATCH):
        options.insert(0, st.session_state[WATCH])
    return list(dict.fromkeys(options))


@st.fragment(run_every=REFRESH_SECONDS)
def live_panel(root: Path) -> None:
    """Jobs in the queue and the progress of the watched run (or sweep)."""
    st.subheader("Progress")
    live = jobs.list_jobs(root)
    for job in live:
        if job.state == "queued":
            st.info(jobs.queue_message(job, live), icon=":material/hourglass_top:")
    options = _watch_options(root, live)
    if not options:
        ui.empty_state(
            "Nothing has been trained here yet. Pick a preset on the left — `demo` takes a "
            "few minutes on a laptop CPU, `smoke` a few seconds — and press Start.",
            train_link=False,
        )
        return
    if st.session_state.get(WATCH_SELECT) not in options:
        st.session_state[WATCH_SELECT] = options[0]
    watched = st.selectbox("Watching", options, key=WATCH_SELECT, format_func=lambda p: Path(p).name)
    st.session_state[WATCH] = watched
    path = Path(watched)
    job = jobs.job_for_run(root, path, include_exited=True)
    if (path / "sweep.json").exists() or (job is not None and job.kind == "sweep"):
        _sweep(root, path, job)
    else:
        _run(root, path, job)


def _request_stop(root: Path, job: jobs.Job) -> None:
    """The Stop / Cancel button's callback: signal the job and remember that it is stopping."""
    outcome = jobs.stop(root, job)
    if outcome == "stopping":
        st.session_state.setdefault(STOPPING, set()).add(job.id)
    st.toast(
        {
            "stopping": f"Stopping {job.name}: saving a checkpoint …",
            "cancelled": f"Cancelled {job.name}",
            "gone": f"{job.name} had already ended",
        }[outcome]
    )


def _controls(root: Path, path: Path, job: jobs.Job | None, run=None) -> None:
    live = job is not None and job.live
    row = st.container(horizontal=True, gap="small")
    cols = (row, row)
    stopping: set[str] = st.session_state.setdefault(STOPPING, set())
    if live and job.id in stopping:  # Stop was pressed: the run checkpoints, then its job ends
        cols[0].button(
            "Stopping …",
            key=f"stopping-{path}",
            icon=":material/hourglass_top:",
            disabled=True,
            help="Finishing the current step and saving a checkpoint.",
        )
    elif live:
        label = "Cancel" if job.state == "queued" else "Stop"
        cols[0].button(
            label,
            key=f"stop-{path}",
            icon=":material/stop_circle:",
            help="Stops after the current step, saves a checkpoint: resume later.",
            on_click=_request_stop,  # before the rerun, so the rerun already shows "Stopping …"
            args=(root, job),
        )
    elif run is not None and run.state == "running":  # started by hand in a terminal
        if cols[0].button("Stop", key=f"stop-pid-{path}", icon=":material/stop_circle:"):
            jobs.stop_pid(int(run.status.get("pid", 0)))
            st.toast(f"Stopping {path.name} …")
    can_resume = (
        not live
        and run is not None
        and run.state in ("stopped", "crashed", "failed")
        and bool(run.checkpoints)
        and run.status.get("step", 0) < run.status.get("total_steps", 0)
    )
    if can_resume and cols[1].button(
        "Resume",
        key=f"resume-{path}",
        icon=":material/play_arrow:",
        type="primary",
        help="Continue from the last checkpoint.",
    ):
        new = jobs.submit(root, "resume", [str(path)], path, run.config.get("device", "auto"), label="resume")
        st.toast(f"Resuming {path.name}" + (" (queued)" if jobs.queue_position(new, jobs.list_jobs(root))[1] else ""))


def _run(root: Path, path: Path, job: jobs.Job | None) -> None:
    if not (path / "config.json").exists():
        _controls(root, path, job)
        if job is not None and job.state == "queued":
            st.caption("Waiting for the device …")
        elif job is not None and job.state == "running":
            st.info(f"Starting `{path.name}`: loading the models and data …", icon=":material/hourglass_top:")
        elif job is not None and job.state == "exited":
            st.error(
                f"`{path.name}` ended before it started (exit code {job.returncode}). Its output:",
                icon=":material/error:",
            )
        else:
            st.warning(f"`{path.name}` has no run files.")
        if job is not None:
            st.code(_tail(job.log_path(), 15) or "(no output yet)", language="text")
        return
    run = state.load_run(path)
    total = int(run.status.get("total_steps") or run.config.get("max_steps") or 1)
    step = int(run.status.get("step") or (run.metrics["step"].iloc[-1] if len(run.metrics) else 0))
    shown_state = "queued" if job is not None and job.state == "queued" else run.state
    st.markdown(f"{ui.badge(shown_state)} &nbsp; **{run.name}** · {run.label} · `{run.meta.get('device', '')}`")
    st.progress(min(1.0, step / max(total, 1)), text=_progress_text(run, step, total))
    ui.show_problems(run)
    if run.status.get("error"):
        st.error(f"The run failed: {run.status['error']}", icon=":material/error:")
    if run.state == "stopped":
        st.caption(f"Stopped at step {step}: press Resume to continue from the checkpoint.")
    _controls(root, path, job, run)
    _charts(run)
    log_file = path / "train.log"
    if log_file.exists():
        with st.expander("Log"):
            st.code(_tail(log_file) or "(empty)", language="text")


def _progress_text(run, step: int, total: int) -> str:
    parts = [f"step {step} / {total}"]
    m = run.metrics
    if len(m):
        last = m.iloc[-1]
        parts.append(f"loss {last['loss']:.4f}")
        if pd.notna(last.get("ratio")):
            parts.append(f"r {last['ratio']:.2f}")
        if pd.notna(last.get("tokens_per_s")):
            parts.append(f"{last['tokens_per_s']:.0f} tok/s")
        left = eta_seconds(m, run.events, step, total)
        if run.state == "running" and step < total and math.isfinite(left):
            parts.append(f"about {_duration(left)} left")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _charts(run) -> None:
    from analysis.figures import dynamics, temperature
    from analysis.style import GROUP_COLORS, LABELS, apply_style

    df = dynamics.loss_ratio_frame(run)
    fig = dynamics.loss_ratio_figure(df, events=run.events, title="Loss and LATF ratio r")
    ui.figure(fig, df, f"{run.name}-live-loss", key="live-loss", height=360, legend_top=True)
    steps = run.probe_steps
    if not steps:
        st.caption("τ histogram: no probe yet (probes run every probe_interval steps).")
        return
    df = temperature.histogram_frame(run, early_step=steps[-1], late_step=steps[-1])
    df = df[(df["column"] == "late") & (df["quantity"] == "tau")]
    fig = go.Figure()
    for group in ("hard", "easy"):
        fig.add_trace(
            go.Histogram(
                x=df.loc[df["group"] == group, "value"],
                name=group,
                marker_color=GROUP_COLORS[group],
                opacity=0.65,
                nbinsx=30,
            )
        )
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text=LABELS["tau"])
    fig.update_yaxes(title_text=LABELS["count"])
    fig = apply_style(fig, f"IDTS temperature τ of the probe tokens at step {steps[-1]}")
    ui.figure(fig, df, f"{run.name}-live-tau-step{steps[-1]}", key="live-tau", height=300, legend_top=True)


def _sweep(root: Path, folder: Path, job: jobs.Job | None) -> None:
    manifest = {}
    try:
        manifest = json.loads((folder / "sweep.json").read_text())
    except (OSError, ValueError):
        pass
    points = manifest.get("runs", [])
    done = sum(p.get("state") == "finished" for p in points)
    shown = (
        "queued"
        if job is not None and job.state == "queued"
        else (
            "running" if job is not None and job.live else ("finished" if points and done == len(points) else "stopped")
        )
    )
    st.markdown(f"{ui.badge(shown)} &nbsp; sweep **{folder.name}** · {done} / {len(points) or '?'} points finished")
    st.progress(done / max(len(points), 1), text=f"{done} of {len(points) or '?'} runs finished")
    _controls(root, folder, job)
    if points:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "point": p["name"],
                        "state": ui.state_label(p.get("state", "pending")),
                        "settings": ", ".join(f"{k}={v}" for k, v in p.get("overrides", {}).items()),
                    }
                    for p in points
                ]
            ),
            hide_index=True,
        )
    current = next((p["name"] for p in points if p.get("state") == "running"), None)
    if current and (folder / current / "config.json").exists():
        st.markdown(f"**Current point: {current}**")
        run = state.load_run(folder / current)
        total = int(run.status.get("total_steps") or 1)
        step = int(run.status.get("step") or 0)
        st.progress(min(1.0, step / total), text=_progress_text(run, step, total))
        _charts(run)
    elif job is not None:
        with st.expander("Log", expanded=not points):
            st.code(_tail(job.log_path(), 15) or "(no output yet)", language="text")
    if (job is None or not job.live) and points and done < len(points):
        if st.button(
            "Continue sweep",
            key=f"resume-sweep-{folder}",
            icon=":material/play_arrow:",
            help="Runs the same sweep again: finished points are skipped, stopped ones resumed.",
        ):
            jobs.submit(
                root,
                "sweep",
                sweep_args(manifest, folder),
                folder,
                job.device if job else "auto",
                log_name="sweep.log",
                label="sweep",
            )
            st.toast(f"Continuing sweep {folder.name}")
