"""Compare: several runs side by side — curves, c sweeps, tables, token-level diff (Fig. 3b–d)."""

import streamlit as st

from app import components as ui
from app import explorer_link, state, url_state

ui.header(
    "Compare",
    "Several runs side by side: loss curves of r schedules against LATF "
    "(Fig. 3b), ROUGE-L against the IDTS strength c (Fig. 3c–d), result and ablation "
    "tables, and which tokens two runs find hard.",
)

paths = ui.runs_or_stop(
    "Runs to compare",
    key="compare-runs",
    none_chosen="Pick at least one run above (or select several on the Runs page).",
)
runs = state.load_runs(paths)
for run in runs:
    ui.show_problems(run)
from analysis.figures import compare  # noqa: E402
from app import loaders  # noqa: E402

flagged = {run.name: problems for run in runs if (problems := loaders.baseline_problems(run))}
if flagged:  # a broken baseline makes every comparison with it meaningless: say so first
    st.warning(
        "Not a sound basis for comparing methods (their numbers below are not findings; the Runs "
        "page shows why):\n" + "\n".join(f"- **{name}**: {'; '.join(problems)}" for name, problems in flagged.items()),
        icon=":material/gpp_bad:",
    )

# Only the open tab is computed and drawn (a hidden tab's charts cost as much as a shown one's);
# the open tab is kept like every other choice here.
TABS = ["Loss curves", "IDTS strength c", "Tables", "Token diff"]
url_state.keep("compare-tab", TABS[0], url_state.choice(TABS))
curves, sweep, results, diff = st.tabs(TABS, key="compare-tab", on_change="rerun")

CURVES = ["kd", "loss", "ce", "ratio"]
# Every choice below is kept across pages and in the URL (app/url_state.py), so no widget gets a default.
url_state.keep("compare-metric", "kd", url_state.choice(CURVES))
url_state.keep("compare-smoothing", 0.0, url_state.number(0.0, 0.95))
url_state.keep("compare-log-y", False, url_state.BOOL)
url_state.keep("compare-aggregate", False, url_state.BOOL)
if curves.open:
    with curves:
        c1, c2, c3 = st.columns([2, 3, 2])
        metric = c1.segmented_control("Curve", CURVES, key="compare-metric")
        smoothing = c2.slider(
            "Smoothing",
            0.0,
            0.95,
            step=0.05,
            key="compare-smoothing",
            help="Exponential moving average weight, bias-corrected (no lag towards the first steps); "
            "raw values stay faint.",
        )
        log_y = c3.toggle("Log scale", key="compare-log-y")
        aggregate = c3.toggle(
            "Mean ± std over seeds",
            key="compare-aggregate",
            help="Runs of the same method (they differ only by seed) as one mean line with a ± one standard "
            "deviation band, at the steps all of them logged.",
        )
        with ui.guarded("the loss curves"):
            df = loaders.loss_curves_frame(runs, metric or "kd", smoothing)
            fig = compare.loss_curves_figure(
                df, title=f"{metric or 'kd'} over training", log_y=log_y, aggregate_seeds=aggregate
            )
            ui.figure(
                fig,
                df,
                f"compare-{metric or 'kd'}-curves",
                key="curves",
                caption="One line per run, each with its own colour, dash and marker (label: the method, "
                "with the seed or the run name when several runs share it). A vertical tick on a line marks "
                "where that run was stopped, crashed or resumed (hover it for what happened).",
            )

if sweep.open:
    with sweep:
        with ui.guarded("the c sweep"):
            df = loaders.c_sweep_frame(runs)
            if df.empty:
                ui.empty_state(
                    "No evaluated runs with IDTS among the chosen ones. A c sweep "
                    "(Train page → sweep over c) gives one run per c value.",
                    train_link=True,
                )
            else:
                fig = compare.c_sweep_figure(df, title="ROUGE-L against IDTS strength c")
                ui.figure(
                    fig,
                    df,
                    "compare-c-sweep",
                    key="c-sweep",
                    caption="Per dataset and averaged; points are means over seeds with their spread. "
                    "Each method (its label without c) is its own line: two methods are never "
                    "pooled into one point.",
                )

if results.open:
    with results:
        with ui.guarded("the results table"):
            st.subheader("Results")
            df = loaders.results_table(runs)
            ui.table_with_csv(df, "results.csv", key="dl-results-csv")
        with ui.guarded("the paper's tables"):
            st.subheader("By paper table")
            names = {
                "table1": "Table 1 — methods ± AdaKD, SFT",
                "table3": "Table 3 — difficulty indicator",
                "table4": "Table 4 — ratio schedule",
                "table5": "Table 5 — temperature strategy",
            }
            url_state.keep("compare-paper-table", "table1", url_state.choice(list(names)))
            table = st.selectbox(
                "Paper table",
                list(names),
                format_func=names.get,
                key="compare-paper-table",
                help="The chosen runs that are an arm of this table (same method as the arm's "
                "preset, any seed); one row per arm, mean ± std over its runs.",
            )
            df = loaders.paper_table(runs, table)
            if df.empty:
                st.caption(
                    f"None of the chosen runs is an arm of {names[table].split(' —')[0]}: run "
                    f"`python -m adakd sweep --preset demo --grid {table}`."
                )
            else:
                ui.table_with_csv(df, f"{table}.csv", key="dl-paper-table-csv")
        with ui.guarded("the ablation table"):
            st.subheader("Ablation")
            df = loaders.ablation_table(runs)
            if df.empty:
                st.caption(
                    "No ablation arms (base, +IDTS, +LATF, full AdaKD) among the chosen runs: "
                    "start an ablation set on the Train page."
                )
            else:
                ui.table_with_csv(df, "ablation.csv", key="dl-ablation-csv")

if diff.open:
    with diff:
        probed = {p: r for p, r in zip(paths, runs, strict=True) if not r.tokens.empty}
        if len(probed) < 2:
            ui.empty_state("The token diff needs two runs with probe data among the chosen runs.", train_link=False)
        else:
            names = {p: r.name for p, r in probed.items()}
            c = st.columns(2)
            a = c[0].selectbox("Run A", list(probed), index=0, key="diff-a", format_func=names.get)
            b = c[1].selectbox("Run B", list(probed), index=1, key="diff-b", format_func=names.get)
            with ui.guarded("the token diff"):
                df = loaders.token_diff_frame(probed[a], probed[b])
                fig = compare.token_diff_figure(df, title=f"Difficulty: {names[a]} vs {names[b]}")
                event = ui.figure(
                    fig,
                    df,
                    f"token-diff-{names[a]}-{names[b]}",
                    key="token-diff",
                    on_select=True,
                    caption="Same probe tokens at the last common probe step: above the "
                    "diagonal, run B finds the token harder than run A. Click a token to open it in the explorer.",
                )
                points = [p for p in (event.selection.points if event is not None else []) if "customdata" in p]
                if points:
                    example, index = (int(v) for v in points[0]["customdata"])
                    label = df.loc[(df["example"] == example) & (df["token_index"] == index), "token_label"]
                    row = st.container(horizontal=True, vertical_alignment="center")
                    row.markdown(f"Token **{label.iloc[0] if len(label) else index}** of probe example {example}:")
                    for side, path in (("A", a), ("B", b)):
                        if row.button(
                            f"Open with {names[path]} ({side})",
                            icon=":material/travel_explore:",
                            key=f"diff-open-{side}",
                        ):
                            explorer_link.open_in_explorer(path, probed[path].config, example, index)
