"""Runs: every run under the runs folder and sample_runs/; select, inspect, delete."""

from pathlib import Path

import pandas as pd
import streamlit as st

from adakd.runs.run_notes import MAX_NOTES_LENGTH, parse_tags, read_notes, write_notes
from analysis.figures.competence import competence_figure
from analysis.replies import EMPTY_REPLY_LIMIT, empty_reply_share, replies_frame
from analysis.validity import evaluation_summary, gate_passed, gate_summary, run_gate
from app import components as ui
from app import jobs, loaders, state, url_state
from app.run_delete import delete_runs
from app.run_filter import FILTER_COLUMNS, RunFilter, apply_filter, filter_options

TABLE_ROW_PX, TABLE_MAX_PX = 35, 740  # about 20 rows visible before the table scrolls

ui.header(
    "Runs",
    "Every training run under the runs folder and the shipped sample runs. "
    "Select one or several rows: the other pages show the selection.",
)

top = st.columns([6, 1])
if top[1].button("Reload", icon=":material/refresh:", width="stretch"):
    state.clear_caches()

table = state.list_runs()
if table.empty:
    ui.no_runs()
    st.stop()

damaged = table[table["problems"].fillna("").astype(str) != ""]
for _, row in damaged.iterrows():
    st.warning(
        f"**{row['name']}** has problems (what could be read is shown): {row['problems']}", icon=":material/warning:"
    )

# ---------------------------------------------------------------- search and filters (kept in the URL)
options = filter_options(table)
bar = st.columns([3, 2, 2, 2, 2, 2])
url_state.keep("runs-search", "", url_state.TEXT)
bar[0].text_input("Search", key="runs-search", placeholder="name, method, tag, notes …", help="Every word must occur.")
for col, (column, label) in zip(bar[1:5], FILTER_COLUMNS.items(), strict=True):
    url_state.keep(f"runs-filter-{column}", [], url_state.choices(options[column]))
    col.multiselect(label, options[column], key=f"runs-filter-{column}", placeholder="all")
url_state.keep("runs-filter-tags", [], url_state.choices(options["tags"]))
bar[5].multiselect(
    "Tags", options["tags"], key="runs-filter-tags", placeholder="any", help="Runs with every chosen tag."
)
chosen_filter = RunFilter(
    search=st.session_state["runs-search"],
    values={column: st.session_state[f"runs-filter-{column}"] for column in FILTER_COLUMNS},
    tags=st.session_state["runs-filter-tags"],
)
visible = apply_filter(table, chosen_filter)

shown = pd.DataFrame(
    {  # a run whose metrics have missing or repeated steps is never plainly "finished"
        "state": [
            ui.state_label(s) + (", with gaps" if g else "")
            for s, g in zip(visible["state"], visible["step_gaps"].fillna(""), strict=True)
        ],
        "name": visible["name"],
        "method": visible["method"],
        "preset": visible["preset"].fillna("–"),
        "steps": [
            f"{s if pd.notna(s) else '–'} / {t if pd.notna(t) else '–'}"
            for s, t in zip(visible["steps"], visible["total_steps"], strict=True)
        ],
        "final loss": pd.to_numeric(visible["final_loss"], errors="coerce"),
        "ROUGE-L": pd.to_numeric(visible["rouge_l"], errors="coerce"),
        "seed": visible["seed"],
        "tags": visible["tags"].fillna(""),
        "sample": visible["is_sample"].astype(bool),
        "sweep": visible["sweep"],
    }
)
paths = visible["path"].astype(str).tolist()
selection = state.selected_paths()
styled = shown.style.map(
    lambda s: f"color: {ui.STATE_TEXT_COLOURS.get(s, '#555')}; font-weight: 600", subset=["state"]
).format({"final loss": "{:.4f}", "ROUGE-L": "{:.2f}"}, na_rep="–")
event = st.dataframe(
    styled,
    hide_index=True,
    on_select="rerun",
    selection_mode="multi-row",
    key=f"runs-table-{hash(tuple(paths))}",  # a new filter: a new table, checked as the selection
    selection_default={"selection": {"rows": [paths.index(p) for p in selection if p in paths]}},
    height=min(TABLE_ROW_PX * (len(shown) + 1) + 3, TABLE_MAX_PX),
    column_config={"sample": st.column_config.CheckboxColumn(help="shipped with the project (read-only)")},
)
# the checked rows are exactly what the details and Delete below act on; selected runs that the
# filter hides stay selected for the other pages
checked = (
    [paths[i] for i in event.selection.rows if i < len(paths)]
    if event is not None
    else [p for p in selection if p in paths]
)
hidden = [p for p in selection if p not in paths]
if event is not None:
    state.set_selected(checked + hidden)
st.caption(
    f"{len(visible)} of {len(table)} runs shown · {len(checked)} checked"
    + (f" (and {len(hidden)} selected run(s) the filter hides)" if hidden else "")
    + " — the analysis pages show the first selected run; Compare shows all of them."
)
if not checked:
    st.info("Check a row to see its details, edit its tags and notes, or delete it.", icon=":material/check_box:")
    st.stop()
detail = (
    checked[0]
    if len(checked) == 1
    else st.selectbox("Details of", checked, format_func=lambda p: Path(p).name, key="runs-detail")
)

run = state.load_run(detail)
st.subheader(run.name)
st.markdown(
    f"{ui.badge(run.state)} &nbsp; **{run.label}** · preset `{run.meta.get('preset') or '–'}`"
    f" · device `{run.meta.get('device', '–')}` · seed `{run.seed}`"
)
ui.show_problems(run)
ui.remote_code_notice(run.config)
notes = read_notes(run.path)
if notes.tags:
    st.markdown(" ".join(f":blue-badge[{tag}]" for tag in notes.tags))
if notes.notes:
    st.caption(notes.notes)
if not run.is_sample:
    with st.expander("Tags and notes", icon=":material/sell:"), st.form(f"notes-{run.path}", border=False):
        tags_text = st.text_input(
            "Tags", ", ".join(notes.tags), help="Comma-separated, e.g. baseline, lr-sweep: the table filters by them."
        )
        notes_text = st.text_area("Notes", notes.notes, height=100, max_chars=MAX_NOTES_LENGTH)
        if st.form_submit_button("Save", icon=":material/save:"):
            try:
                write_notes(run.path, parse_tags(tags_text), notes_text)
            except (ValueError, OSError) as err:
                st.error(f"Not saved: {err}", icon=":material/error:")
            else:
                state.clear_caches()
                st.toast(f"Saved the tags and notes of {run.name}")
                st.rerun()
m = st.columns(4)
m[0].metric(
    "Steps",
    f"{run.status.get('step', len(run.metrics))} / {run.status.get('total_steps', run.config.get('max_steps', '–'))}",
)
m[1].metric("Final loss", f"{run.metrics['loss'].iloc[-1]:.4f}" if len(run.metrics) else "–")
student = run.final_eval("student")
avg = student[student["dataset"] == "average"]["rouge_l"]
m[2].metric("ROUGE-L (student)", f"{avg.iloc[0]:.2f}" if len(avg) else "–")
m[3].metric("Probe steps", len(run.probe_steps))
if run.status.get("error"):
    st.error(f"The run failed: {run.status['error']}")
checks = run_gate(run)
if checks and gate_passed(checks):
    st.success(f"Validity gate {gate_summary(checks)}", icon=":material/verified:")
elif checks:
    st.error(
        f"Validity gate {gate_summary(checks)}. The experiment does not show a student learning from its "
        "teacher, so differences between methods on it are not findings.",
        icon=":material/gpp_bad:",
    )
elif run.state == "finished":
    st.info("Validity gate: " + gate_summary(checks) + ".", icon=":material/help:")
scores = evaluation_summary(run)
if len(scores):
    with st.expander("Evaluation: teacher, initial and final student", expanded=bool(checks)):
        st.dataframe(scores.style.format(na_rep="–", precision=3), hide_index=True)
curve = loaders.competence_frame(run)
if len(curve) >= 3:  # the initial student and two or more evaluations during training
    with st.expander("Competence over training: held-out CE and degenerate replies per evaluation"):
        ui.figure(
            competence_figure(curve, title=f"Competence over training — {run.name}"),
            curve,
            f"{run.name}-competence",
            key="competence",
            caption="CE gap closed = (CE_init − CE_step) / (CE_init − CE_teacher); the study regime's target "
            "for a default run is 50 %. Evaluated every eval_interval steps on the held-out prompts.",
        )
replies = replies_frame(run)
if empty_reply_share(replies) >= EMPTY_REPLY_LIMIT:
    st.warning(
        f"{empty_reply_share(replies):.0%} of the final student's stored replies are empty (its first "
        "token is the end token): its ROUGE-L measures that failure, not the method.",
        icon=":material/warning:",
    )
from analysis.figures import ctkd  # noqa: E402

if ctkd.has_ctkd(run):  # CTKD runs: the learned global temperature, step by step
    with ui.guarded("the CTKD temperature"):
        df = ctkd.ctkd_frame(run)
        ui.figure(
            ctkd.ctkd_figure(df, title=f"CTKD temperature — {run.name}"),
            df,
            f"{run.name}-ctkd-tau",
            key="ctkd-tau",
            caption="The learned global τ each step used (trained through a "
            "gradient-reversal layer) and the reversal strength λ, cosine from 1 to 0.",
        )
with st.expander("Configuration"):
    st.json(run.config, expanded=False)
if len(run.events):
    with st.expander("Events"):
        st.dataframe(run.events[["step", "kind", "message"]], hide_index=True)
if len(replies):
    with st.expander(f"Final student's replies ({len(replies)} stored: what ROUGE-L compares)"):
        st.dataframe(
            replies, hide_index=True, column_config={"rouge_l": st.column_config.NumberColumn("ROUGE-L", format="%.1f")}
        )
log_file = Path(run.path) / "train.log"
if log_file.exists():
    with st.expander("Training log (last 40 lines)"):
        st.code("\n".join(log_file.read_text(errors="replace").splitlines()[-40:]) or "(empty)")

# ---------------------------------------------------------------- delete (never a sample run)
st.divider()
for reason in st.session_state.pop("delete-refused", []):
    st.error(reason, icon=":material/block:")
deletable = [p for p in checked if not table.loc[table["path"] == p, "is_sample"].iloc[0]]
busy = [
    p
    for p in deletable
    if table.loc[table["path"] == p, "state"].iloc[0] == "running" or jobs.job_for_run(state.runs_root(), p) is not None
]
if not deletable:
    st.caption("Sample runs are read-only and cannot be deleted.")
elif len(deletable) < len(checked):
    st.caption("Some checked rows are sample runs (read-only): uncheck them to delete the others.")
elif busy:
    st.caption("A selected run is running or queued: stop it on the Train page before deleting it.")
elif st.session_state.get("confirm-delete") != deletable:  # asked for exactly these runs, else ask again
    if st.button(f"Delete the {len(deletable)} checked run(s)…", icon=":material/delete:"):
        st.session_state["confirm-delete"] = deletable
        st.rerun()
else:
    names = ", ".join(Path(p).name for p in deletable)
    st.warning(f"Delete {names} for good? This removes the folder(s) and checkpoints.")
    c = st.columns([1, 1, 6])
    if c[0].button("Yes, delete", type="primary", icon=":material/delete_forever:"):
        deleted, refused = delete_runs(deletable, state.runs_root(), state.sample_root())
        st.session_state["confirm-delete"] = None
        st.session_state["delete-refused"] = refused  # shown after the rerun
        state.set_selected([p for p in selection if Path(p).name not in deleted])
        state.clear_caches()
        if deleted:
            st.toast(f"Deleted {', '.join(deleted)}")
        st.rerun()
    if c[1].button("Cancel"):
        st.session_state["confirm-delete"] = None
        st.rerun()
