"""Report bundle: chosen figures + their data + the runs' config and provenance, as one zip."""

from pathlib import Path

import streamlit as st

from app import components as ui
from app.figure_catalogue import PER_RUN, SEVERAL_RUNS, build, chosen

ui.header(
    "Report bundle",
    "Pack chosen figures (PNG / SVG / PDF / HTML), the data behind each one "
    "(CSV), the runs' config.json and status.json and a provenance record (package versions, "
    "git revision, seeds) into one zip for a report.",
)

paths = ui.runs_or_stop("Runs", key="export-runs", none_chosen="Pick at least one run.")

c1, c2 = st.columns(2)
per_run = c1.multiselect(
    "Figures of each run",
    list(PER_RUN),
    default=list(PER_RUN)[:3],
    key="export-per-run",
    format_func=lambda k: PER_RUN[k][0],
)
several = c2.multiselect(
    "Figures over the runs",
    list(SEVERAL_RUNS),
    default=list(SEVERAL_RUNS)[:1],
    key="export-several",
    format_func=lambda k: SEVERAL_RUNS[k][0],
)
formats = st.pills(
    "Image formats",
    ["png", "svg", "pdf", "html"],
    default=["png", "html"],
    selection_mode="multi",
    key="export-formats",
    help="HTML is interactive and needs no browser (the pages share one figures/plotly.min.js: unzip "
    "them together); PNG/SVG/PDF are rendered by Kaleido.",
)
from analysis.bundle import report_bundle  # noqa: E402
from analysis.export import chromium_available  # noqa: E402

if any(f in ("png", "svg", "pdf") for f in formats or []) and not chromium_available():
    st.warning(
        "No Chrome/Chromium found, so PNG/SVG/PDF cannot be rendered here: install `chromium` or keep only HTML.",
        icon=":material/warning:",
    )

# Figures are built only to be packed or previewed: drawing every chosen one on each rerun of
# the page (each choice above reruns it) cost most of its time.
entries = chosen(per_run, several, paths)
st.caption(
    f"{len(entries)} figures from {len(paths)} run(s): " + ", ".join(entries) if entries else "No figures chosen."
)
if (
    entries
    and formats
    and st.button("Build the bundle", type="primary", icon=":material/inventory_2:", key="export-build")
):
    with st.spinner(f"Rendering {len(entries) * len(formats)} files …"):
        figures, frames, problems = build(per_run, several, paths)
        st.session_state["export-problems"] = problems
        try:
            data = report_bundle(figures, frames, [Path(p) for p in paths], formats=tuple(formats))
        except Exception as err:
            st.error(f"Could not build the bundle: {err}", icon=":material/error:")
        else:
            st.session_state["export-bundle"] = data
for problem in st.session_state.get("export-problems", []):  # figures left out of the last bundle
    st.warning(f"Left out of the bundle: {problem}", icon=":material/warning:")
bundle = st.session_state.get("export-bundle")
if bundle:
    st.success(f"Bundle ready: {len(bundle) / 1e6:.2f} MB", icon=":material/check_circle:")
    st.download_button(
        "Download adakd-report.zip",
        bundle,
        "adakd-report.zip",
        "application/zip",
        key="export-download",
        icon=":material/download:",
        on_click="ignore",
    )

if entries:
    preview = st.expander("Preview", key="export-preview-open", on_change="rerun")
    if preview.open:  # a closed preview builds nothing
        with preview:
            name = st.selectbox("Figure", list(entries), key="export-preview")
            label, builder = entries[name]
            try:
                figure, _ = builder()
            except Exception as err:
                st.warning(f"{label} for {name}: {err}", icon=":material/warning:")
            else:
                st.plotly_chart(ui.themed(figure), width="stretch", key="export-preview-chart")
