"""Temperature & entropy: the IDTS temperatures and the student's entropy (paper Fig. 4)."""

import streamlit as st

from app import components as ui

ui.header(
    "Temperature & entropy",
    "What IDTS does to each token: hard tokens get τ < 1 "
    "(sharper, corrective), easy tokens τ > 1 (smoother); compare the student's entropy "
    "before and after scaling, early against late in training (paper Fig. 4).",
)

run = ui.run_or_stop(key="temperature-run")
steps = run.probe_steps
if not steps:
    ui.empty_state(
        f"{run.name} has no probe data (its probe_interval is 0), so there are no "
        "per-token temperatures to show. Pick another run."
    )
    st.stop()
from analysis.figures import temperature  # noqa: E402
from app import loaders  # noqa: E402

if len(steps) == 1:
    early = late = steps[0]
    st.caption(f"Only one probe step ({early}) in this run: both columns show it.")
else:
    early, late = st.select_slider(
        "Early and late probe step",
        options=steps,
        value=(steps[0], steps[-1]),
        key="temperature-steps",
        help="Left column: before training is step 0; right column: any later probe step.",
    )
view = st.radio(
    "Tokens",
    list(temperature.VIEWS),
    format_func=temperature.VIEWS.get,
    horizontal=True,
    key="temperature-view",
    help="The paper's Fig. 4 shows the tokens LATF selected, split at "
    "their median difficulty, at the temperatures they are trained at.",
)
with ui.guarded("the histogram grid"):
    df = loaders.histogram_frame(run, int(early), int(late), view)
    fig = temperature.histogram_grid_figure(df, title=f"τ and student entropy, hard vs easy — {run.name}")
    ui.figure(
        fig,
        df,
        f"{run.name}-temperature-step{early}-{late}",
        key="histograms",
        caption="Rows: IDTS temperature τ, student entropy before IDTS H(softmax z_S), "
        "after IDTS H(softmax(z_S/τ)) in nats. Tokens: "
        + temperature.VIEWS[view]
        + "; hard = difficulty above that median; dashed lines at each group's mean.",
    )
    if len(df):
        summary = df.groupby(["column", "step", "quantity", "group"])["value"].mean().unstack("group").reset_index()
        with st.expander("Group means"):
            st.dataframe(summary, hide_index=True)
