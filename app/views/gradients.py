"""Gradients: how hard / mid / easy tokens pull the student (paper Fig. 1 bottom)."""

import streamlit as st

from app import components as ui

ui.header(
    "Gradients",
    "Per token group, the direction and size of the distillation gradient "
    "w.r.t. the student logits: does it agree with the SFT gradient, and which group "
    "dominates the update (paper Fig. 1 bottom)?",
)

run = ui.run_or_stop(key="gradients-run")
if run.gradients.empty:
    ui.empty_state(
        f"{run.name} has no gradient probes (its probe_interval is 0). "
        "Pick another run, or train one with probes on the Train page."
    )
    st.stop()
from analysis.figures import gradients  # noqa: E402
from app import loaders  # noqa: E402

split = st.radio(
    "Groups",
    ["paper", "current"],
    horizontal=True,
    key="gradients-split",
    format_func=lambda s: {"paper": "paper split (r = 0.5: 25/25/50)", "current": "at the run's r"}[s],
    help="The paper split makes runs with different r comparable.",
)
with ui.guarded("the gradient figures"):
    df = loaders.gradient_frame(run, split)
    st.subheader("Agreement with SFT")
    fig = gradients.gradient_cosine_figure(df, title=f"cos with the SFT gradient — {run.name}")
    ui.figure(
        fig,
        df,
        f"{run.name}-gradient-cos-sft-{split}",
        key="cos-sft",
        height=380,
        caption="Below the dashed line the group's distillation gradient conflicts with plain SFT on the same tokens.",
    )
    st.subheader("Share of the update")
    fig = gradients.gradient_share_figure(df, title=f"Gradient norm share and cos with total — {run.name}")
    ui.figure(
        fig,
        df,
        f"{run.name}-gradient-share-{split}",
        key="share",
        height=400,
        caption="Left: each group's share of the summed gradient norms (%). Right: "
        "alignment of each group's gradient with the full-batch gradient.",
    )
