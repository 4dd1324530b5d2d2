"""Token dynamics: difficulty of probe tokens over training (Fig. 1 top) and LATF's r (Fig. 3a);
for GKD / DistiLLM runs, a small panel of the student-generated data each step trained on."""

import streamlit as st

from app import components as ui
from app import explorer_link, url_state

ui.header(
    "Token dynamics",
    "How hard each response token stays for the student during training "
    "(paper Fig. 1 top) and how LATF moves the token ratio r with the loss (Fig. 3a).",
)

run = ui.run_or_stop(key="dynamics-run")
from analysis.figures import dynamics  # noqa: E402  (after the page shows: imports plotly)
from analysis.figures.regime import regime_figure, student_data_note  # noqa: E402
from app import loaders  # noqa: E402

# Only the open tab is computed and drawn, as on Compare: each chart costs the browser about as
# much to draw hidden as shown. The open tab is kept like every other choice here.
TABS = ["Loss and r", "Difficulty heat map", "Token groups"]
url_state.keep("dynamics-tab", TABS[0], url_state.choice(TABS))
loss_tab, heatmap_tab, groups_tab = st.tabs(TABS, key="dynamics-tab", on_change="rerun")
# Every tab's choices are kept across pages and in the URL (app/url_state.py), the closed tabs'
# too, so a link holds them all; no widget gets a default.
url_state.keep("dynamics-metric", "kd", url_state.choice(["kd", "loss", "ce"]))
url_state.keep("dynamics-smoothing", 0.0, url_state.number(0.0, 0.95))
url_state.keep("dynamics-heatmap-groups", False, url_state.BOOL)
url_state.keep("dynamics-split", "current", url_state.choice(["current", "paper"]))
examples = sorted(int(e) for e in run.tokens["example"].unique()) if not run.tokens.empty else []
if examples:
    url_state.keep("dynamics-example", examples[0], url_state.choice(examples), valid=lambda e: e in examples)


def loss_and_ratio() -> None:
    st.subheader("Distillation loss and LATF ratio r")
    c1, c2 = st.columns([2, 3])
    metric = c1.segmented_control(
        "Loss shown",
        ["kd", "loss", "ce"],
        key="dynamics-metric",
        help="kd: the AdaKD/KD term; loss: the total objective; ce: student cross-entropy on the labels",
    )
    smoothing = c2.slider(
        "Smoothing",
        0.0,
        0.95,
        step=0.05,
        key="dynamics-smoothing",
        help="Exponential moving average weight of the loss, bias-corrected (no lag towards the first "
        "steps); raw values stay faint. r is drawn as it was.",
    )
    with ui.guarded("the loss curve"):
        df = loaders.loss_ratio_frame(run)
        fig = dynamics.loss_ratio_figure(
            df,
            events=run.events,
            metric=metric or "kd",
            title=f"Loss and LATF ratio — {run.name}",
            smoothing=smoothing,
        )
        ui.figure(
            fig,
            df,
            f"{run.name}-loss-ratio",
            key="loss-ratio",
            caption="Diamonds: LATF ratio changes (hover for old → new r); crosses: skipped steps; "
            "dotted lines: where the run was stopped, crashed or resumed (hover the word at the top).",
        )

    with ui.guarded("the student-data panel"):
        df = loaders.regime_frame(run)
        if not df.empty:  # gkd / distillm runs only
            st.subheader("Student-generated data")
            fig = regime_figure(df, title=f"Student data ({run.config.get('regime', 'regime')}) — {run.name}")
            ui.figure(
                fig,
                df,
                f"{run.name}-regime",
                key="regime",
                caption="Top: probability of training on student samples (GKD λ_on, DistiLLM φ) and "
                "the running share of steps on fresh samples / on any student data; middle: "
                "replay-buffer size; bottom: mean generated response length per sampled step.",
            )
            if note := student_data_note(df, run.config):
                st.info(note, icon=":material/info:")


def no_probes() -> bool:
    """Says so and returns True when the run has no per-token data."""
    if run.tokens.empty:
        ui.empty_state(
            f"{run.name} has no probe data (its probe_interval is 0), so there is no "
            "per-token view. Runs started from the Train page probe every few steps.",
            train_link=False,
        )
    return run.tokens.empty


def difficulty_heatmap() -> None:
    st.subheader("Difficulty of each response token over training")
    example = st.selectbox("Probe example", examples, key="dynamics-example", format_func=lambda e: f"example {e}")
    with ui.guarded("the difficulty heat map"):
        df = loaders.difficulty_heatmap_frame(run, example)
        show_groups = st.toggle(
            "Mark the hard / mid / easy group of each cell",
            key="dynamics-heatmap-groups",
            help="A letter in each cell: H hard, M mid (both distilled), none for easy (left out by LATF).",
        )
        fig = dynamics.difficulty_heatmap_figure(
            df, title=f"Token difficulty, probe example {example} — {run.name}", mark_groups=show_groups
        )
        hover = [
            f"token {label}<br>step {step}<br>difficulty {s:.3f}<br>group {group}<br>click: pick it for the explorer"
            for label, step, s, group in zip(df["token_label"], df["step"], df["difficulty"], df["group"], strict=True)
        ]
        ui.click_targets(fig, df["step"].astype(int), df["token_label"], df["token_index"].astype(int), hover)
        event = ui.figure(
            fig,
            df,
            f"{run.name}-difficulty-example{example}",
            key="heatmap",
            on_select=True,
            caption="Rows: response tokens in order; colour: Hellinger difficulty s at that "
            "probe step (0 = the student matches the teacher). Click a cell to pick its token below.",
        )
        tokens = df.drop_duplicates("token_index").set_index("token_index")["token_label"]
        # the click targets' points carry the token index; the heat map's own carry its group name
        indices = [p["customdata"] for p in (event.selection.points if event is not None else [])]
        clicked = next((int(i) for i in indices if isinstance(i, int | float)), None)
        if clicked is not None and clicked != st.session_state.get("dynamics-clicked"):
            st.session_state["dynamics-token"] = clicked  # a new click picks the token (a kept one does not)
        st.session_state["dynamics-clicked"] = clicked
        # the token is kept too: the tab may be closed and opened again, or the page reloaded
        first, choices = int(tokens.index[0]), [int(i) for i in tokens.index]
        url_state.keep("dynamics-token", first, url_state.choice(choices), valid=lambda i: i in choices)
        c1, c2 = st.columns([3, 2], vertical_alignment="bottom")
        token = c1.selectbox("Token", list(tokens.index), key="dynamics-token", format_func=tokens.get)
        if c2.button("Open in the Token explorer", icon=":material/travel_explore:", key="dynamics-open"):
            explorer_link.open_in_explorer(str(run.path), run.config, example, int(token))


def token_groups() -> None:
    st.subheader("Hard / mid / easy groups")
    split = st.radio(
        "Groups",
        ["current", "paper"],
        horizontal=True,
        key="dynamics-split",
        format_func=lambda s: {"current": "at the run's r", "paper": "paper split (r = 0.5: 25/25/50)"}[s],
    )
    with ui.guarded("the group bands"):
        df = loaders.group_difficulty_frame(run, split)
        fig = dynamics.group_difficulty_figure(df, title=f"Difficulty by token group — {run.name}")
        ui.figure(
            fig,
            df,
            f"{run.name}-group-difficulty-{split}",
            key="groups",
            caption="Median line with 25–75 % (dark) and 10–90 % (light) bands of s per group.",
        )


if loss_tab.open:
    with loss_tab:
        loss_and_ratio()
if heatmap_tab.open:
    with heatmap_tab:
        if not no_probes():
            difficulty_heatmap()
if groups_tab.open:
    with groups_tab:
        if not no_probes():
            token_groups()
