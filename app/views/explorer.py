"""Token explorer: how AdaKD would treat each response token of your own prompt."""

import time

import streamlit as st

from analysis import run_student
from app import components as ui
from app import explorer_link, jobs, models, state, url_state

ui.header(
    "Token explorer",
    "Type a prompt: the teacher's reply (or your reference) is scored by "
    "teacher and student token by token — difficulty, hard / mid / easy group at ratio r, the "
    "IDTS temperature at strength c. Pick a token for both models' top-k and its attribution.",
)

RESULT = "explorer-result"
PROMPT_DEFAULTS = {
    "explorer-prompt": "What is the capital of France?",
    "explorer-context": "",
    "explorer-reference": "",
}

# A token opened from another page (app/explorer_link.py): that run, its probe example, analysed
# now, at that token. Set before the widgets are drawn, which then show these values.
request = explorer_link.take_request()
if request is not None:
    st.session_state.update(
        {
            "explorer-source": "run",
            "explorer-run": request.run,
            "explorer-prompt": request.instruction,
            "explorer-context": request.context,
            "explorer-reference": request.response,
        }
    )
    state.set_selected([request.run] + [p for p in state.selected_paths() if p != request.run])
for key, default in PROMPT_DEFAULTS.items():  # the text boxes get their first value here, not as value=
    st.session_state.setdefault(key, default)


def rebuild_panel(path: str, name: str, info: dict) -> None:
    """Offer to train the run's student again from its config.json (adakd/training/rebuild.py), and follow it."""
    estimate = info["estimate_s"]
    when = (
        f"about {estimate / 60:.0f} min here if this machine is the one that trained it"
        if estimate
        else "as long as the run took"
    )
    job = jobs.job_for_run(state.runs_root(), info["folder"])
    if job is None or not job.live:
        st.caption(
            f"{name} kept no checkpoint. Its trained student can be rebuilt exactly from config.json "
            f"(training runs again, {when}; kept in the cache, checked against the run's losses)."
        )
        if st.button("Rebuild the trained student", icon=":material/build:", key=f"rebuild-{path}"):
            try:
                jobs.submit(
                    state.runs_root(),
                    "rebuild",
                    [path],
                    info["folder"],
                    log_name="rebuild.log",
                    label=f"rebuild {name}",
                )
            except RuntimeError as err:
                st.error(str(err))
            st.rerun()
        return

    @st.fragment(run_every=2)
    def follow() -> None:
        now = run_student.rebuild_info(path)
        if now["built"] is not None:
            st.rerun()  # the rebuilt checkpoint is now in the list
        step, total = now["progress"] or (0, 0)
        st.progress(
            step / total if total else 0.0,
            text=f"Rebuilding the trained student: step {step} / {total or '…'} ({when})",
        )

    follow()


def teacher_notice(path: str, config: dict, meta: dict) -> None:
    """Say that the first Analyse fine-tunes the run's teacher (it is not in this machine's cache), and how long."""
    seconds = (meta.get("teacher_sft") or {}).get("seconds")
    when = f"about {seconds / 60:.0f} min on the machine that ran it" if isinstance(seconds, int | float) else "minutes"
    st.warning(
        f"This run distils from its teacher fine-tuned for {config.get('teacher_sft_steps')} steps first "
        f"(`teacher_sft_steps`), which this machine has not built yet: the first Analyse fine-tunes it "
        f"({when}; cached for every later use). To build it ahead, in a terminal: "
        f'`python -m adakd teacher --run "{path}"`; rebuilding the trained student builds it too.',
        icon=":material/hourglass_top:",
    )


# Typed text is bounded before it reaches the tokenizer; the token bounds (analysis.explorer:
# 1024 prompt / 512 reply tokens, and the model context) then give the precise message.
MAX_TEXT_CHARS = 20_000
TOKENS_PER_ROW = ui.TOKENS_PER_ROW
source_col, prompt_col = st.columns([2, 3], gap="large")

with source_col:
    st.subheader("Models")
    # the page's choices are kept across pages and in the URL (app/url_state.py): no widget defaults
    url_state.keep("explorer-source", "run", url_state.choice(["run", "tiny"]))
    kind = st.radio(
        "Teacher and student",
        ["run", "tiny"],
        horizontal=True,
        key="explorer-source",
        format_func={"run": "from a run", "tiny": "tiny random (instant)"}.get,
        help="From a run: the run's own teacher, and its student at initialisation or "
        "at a checkpoint. Tiny random: two untrained 2-layer models, for trying the page.",
    )
    spec = models.TINY_SPEC
    if kind == "run":
        path = ui.run_picker(key="explorer-run")
        if path is None:
            ui.no_runs()
            st.stop()
        run = state.load_run(path)
        rebuild = run_student.rebuild_info(path)
        own = list(run.checkpoints)
        checkpoints = sorted(set(own) | ({rebuild["built"][0]} if rebuild["built"] else set()))  # + a rebuilt one
        options = [None, *reversed(checkpoints)]

        def label(s):
            if s is None:
                return "at initialisation (untrained)"
            rebuilt = rebuild["built"] is not None and s == rebuild["built"][0] and s not in own
            return f"checkpoint at step {s}" + (" (rebuilt from config.json)" if rebuilt else "")

        step = st.selectbox(
            "Student", options, key=f"explorer-step-{path}", index=1 if checkpoints else 0, format_func=label
        )
        if step is None and run.state == "finished":
            st.warning(
                "This run finished training, but the student scored here is the one **at initialisation**, "
                "not the trained one.",
                icon=":material/warning:",
            )
        if not checkpoints and run.state == "finished":
            rebuild_panel(path, run.name, rebuild)
        spec = models.run_spec(run, step)
        ui.remote_code_notice(run.config)
        if models.teacher_to_build(spec) is not None:
            teacher_notice(str(run.path), run.config, run.meta)
    st.caption(models.describe(spec))

# (label, session key, height, help) of the optional text fields below the prompt
OPTIONAL_FIELDS = (
    (
        "Context (optional)",
        "explorer-context",
        68,
        "Dolly's context field: text the instruction refers to, formatted into the prompt as in training.",
    ),
    ("Reference reply (optional)", "explorer-reference", 70, "Empty: the teacher's greedy reply is scored."),
)

with prompt_col:
    st.subheader("Prompt")
    with st.form("explorer-form", border=False):
        prompt = st.text_area("Prompt", key="explorer-prompt", height=90, max_chars=MAX_TEXT_CHARS)
        context, reference = (
            st.text_area(label, key=key, height=height, max_chars=MAX_TEXT_CHARS, help=help_text)
            for label, key, height, help_text in OPTIONAL_FIELDS
        )
        c1, c2, c3 = st.columns(3)
        url_state.keep("explorer-r", 0.5, url_state.number(0.05, 1.0))
        url_state.keep("explorer-c", 0.5, url_state.number(0.0, 2.0))
        url_state.keep("explorer-max-new", 48, url_state.integer(8, 128))
        ratio = c1.slider(
            "LATF ratio r",
            0.05,
            1.0,
            step=0.05,
            key="explorer-r",
            help="Share of tokens LATF keeps: top r/2 hard, next r/2 mid",
        )
        c = c2.slider("IDTS strength c", 0.0, 2.0, step=0.05, key="explorer-c")
        max_new = c3.slider("Max reply tokens", 8, 128, step=8, key="explorer-max-new")
        go = st.form_submit_button("Analyse", type="primary", icon=":material/search:")


def analyse(spec, prompt: str, reference: str | None, ratio: float, c: float, max_new: int, context: str):
    """models.explore in its stages (models, teacher reply, scoring, r and c), each named with
    its time in a status box (a cached stage shows its near-zero time). None (and the error) when it fails."""
    with st.status("Analysing …", expanded=False) as status:
        start = time.perf_counter()
        stage_start = start

        def done(what: str) -> None:
            nonlocal stage_start
            now = time.perf_counter()
            st.write(f"{what}: {now - stage_start:.2f} s")
            stage_start = now

        try:
            fine_tune = models.teacher_to_build(spec) is not None
            status.update(label="Fine-tuning the run's teacher first (once) …" if fine_tune else "Loading the models …")
            models.load_pair(spec)
            done("Models loaded")
            if reference is None:
                status.update(label="The teacher writes its reply …")
                models.teacher_reply(spec, prompt, max_new, context)
                done("Teacher's greedy reply")
            status.update(label="Scoring the tokens (one forward pass per model) …")
            models.scored_reply(spec, prompt, reference, max_new_tokens=max_new, context=context)
            done("Forward passes and token statistics")
            result = models.explore(spec, prompt, reference, ratio=ratio, c=c, max_new_tokens=max_new, context=context)
            done(f"Groups and temperatures at r = {ratio:g}, c = {c:g}")
        except Exception as err:  # a model that cannot load or a bad prompt: say so, keep the page
            status.update(label="Could not analyse the prompt", state="error", expanded=True)
            st.error(f"Could not analyse the prompt: {err}", icon=":material/error:")
            return None
        status.update(label=f"Analysed in {time.perf_counter() - start:.2f} s", state="complete")
    return result


if go or request is not None:
    result = analyse(spec, prompt, reference.strip() or None, ratio, c, int(max_new), context.strip())
    before = st.session_state.get(RESULT)
    st.session_state[RESULT] = result
    st.session_state.pop("explorer-attribution", None)
    if request is not None and result is not None and request.token_index < len(result.tokens):
        st.session_state["explorer-token"] = request.token_index  # the token the link pointed at
    elif before is None or result is None or list(before.response_ids) != list(result.response_ids):
        st.session_state.pop("explorer-token", None)  # a new reply starts at its hardest token
    # else the same reply re-scored (r or c moved): the chosen token stays
if request is not None:
    st.info(
        f"Opened from probe example {request.example}, token {request.token_index}: the prompt as training "
        "saw it (cut to the run's max_prompt_length) and its reference reply, scored whole.",
        icon=":material/link:",
    )

result = st.session_state.get(RESULT)
if result is None:
    st.info("Press **Analyse** to score the reply token by token.", icon=":material/info:")
    st.stop()

from analysis import explorer  # noqa: E402

source = "your reference" if result.response_source == "reference" else "the teacher's greedy reply"
st.markdown(f"**Reply scored** ({source}, {len(result.tokens)} tokens): {result.response}")
url_state.keep("explorer-color", explorer.COLOR_OPTIONS[0], url_state.choice(explorer.COLOR_OPTIONS))
color_by = st.selectbox(
    "Colour tokens by", explorer.COLOR_OPTIONS, key="explorer-color", format_func=explorer.COLOR_LABELS.get
)
with ui.guarded("the token map"):
    fig = explorer.explorer_tokens_figure(result, color_by=color_by, tokens_per_row=TOKENS_PER_ROW)
    fig.update_traces(colorbar_title_side="right", selector={"type": "heatmap"})  # room for the tokens
    ui.clickable_cells(fig, len(result.tokens), TOKENS_PER_ROW)
    event = ui.figure(
        fig,
        result.tokens,
        "explorer-tokens",
        key="explorer-tokens",
        on_select=True,
        caption="Hover a token for its group, τ, entropies and both models' top-k; click it for its top-k bars below.",
    )
    points = event.selection.points if event is not None else []
    clicked = int(points[0]["customdata"]) if points else None
    if clicked is not None and clicked != st.session_state.get("explorer-clicked"):
        st.session_state["explorer-token"] = clicked  # a click picks the token below
    st.session_state["explorer-clicked"] = clicked

labels = [f"{i}: {t!r}" for i, t in zip(result.tokens["token_index"], result.tokens["token_text"], strict=True)]
hardest = int(result.tokens["difficulty"].idxmax())
if st.session_state.get("explorer-token") not in range(len(labels)):
    st.session_state["explorer-token"] = hardest
token = st.selectbox(
    "Token",
    range(len(labels)),
    key="explorer-token",
    format_func=lambda i: labels[i],
    help="Starts at the hardest token.",
)
row = result.tokens.iloc[token]
m = st.columns(5)
m[0].metric("Difficulty", f"{row['difficulty']:.3f}")
m[1].metric("Group", f"{row['group']}")
m[2].metric("τ", "–" if row["tau"] != row["tau"] else f"{row['tau']:.3f}")
m[3].metric("p(token) teacher", f"{row['p_label_teacher']:.3f}")
m[4].metric("p(token) student", f"{row['p_label_student']:.3f}")
with ui.guarded("the top-k bars"):
    fig = explorer.topk_figure(result, token)
    df = result.topk[result.topk["token_index"] == token]
    ui.figure(fig, df, f"explorer-topk-token{token}", key="explorer-topk")

st.subheader("Attribution")
c1, c2 = st.columns([2, 5])
method = c1.selectbox(
    "Method",
    ["feature_ablation", "integrated_gradients"],
    key="explorer-attr-method",
    format_func=lambda s: s.replace("_", " "),
)
if c1.button(
    f"Attribute token {token}",
    key="explorer-attribute",
    icon=":material/insights:",
    help="Which prompt tokens raise or lower each model's log-probability of this token (Captum).",
):
    n_prompt = min(len(result.prompt_ids), models.ATTRIBUTION_PROMPT_TOKENS)
    steps = (
        f"one forward pass per prompt token, {n_prompt}"
        if method == "feature_ablation"
        else "forward and backward passes along the integration path"
    )
    with st.status(f"Attributing token {token} ({steps}, per model) …", expanded=False) as status:
        start = time.perf_counter()
        try:
            st.session_state["explorer-attribution"] = (token, method, models.attribute(spec, result, token, method))
            status.update(label=f"Attributed in {time.perf_counter() - start:.1f} s", state="complete")
        except Exception as err:
            status.update(label="Could not attribute the token", state="error", expanded=True)
            st.error(f"Could not attribute the token: {err}", icon=":material/error:")
done = st.session_state.get("explorer-attribution")
if done and done[0] == token and done[1] == method:
    with ui.guarded("the attribution"):
        fig = models.attribution_figure(done[2])
        ui.figure(
            fig, models.attribution_frame(done[2]), f"explorer-attribution-token{token}", key="explorer-attribution"
        )
else:
    c2.caption("Captum attribution of the chosen token to the prompt, teacher and student side by side.")
