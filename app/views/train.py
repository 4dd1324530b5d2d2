"""Train: a form over the run config that launches `python -m adakd train|sweep`, and live progress."""

from datetime import datetime

import streamlit as st

from adakd.config import DEVICES, DIVERGENCES, IDTS_MODES, LATF_KINDS, RunConfig
from adakd.presets import PRESETS
from app import components as ui
from app import jobs, state
from app.live import live_panel
from app.train_form import PRESET_HELP, build_request

ui.header(
    "Train",
    "Start a distillation in the background — the same `python -m adakd` process "
    "you could type by hand — and watch it learn. One job runs per device; more wait in a queue.",
)

root = state.runs_root()
form_col, live_col = st.columns([5, 7], gap="large")

with form_col:
    st.subheader("New run")
    names = list(PRESETS)
    preset = st.selectbox(
        "Preset",
        names,
        index=names.index("demo") if "demo" in names else 0,
        key="train-preset",
        help="A named starting configuration; the fields below start from its values.",
    )
    st.caption(PRESET_HELP.get(preset, ""))
    defaults = RunConfig.from_dict(dict(PRESETS[preset]))
    k = lambda field: f"train-{preset}-{field}"  # noqa: E731 - widgets reset when the preset changes

    mode = st.radio(
        "What to start",
        ["single", "c-sweep", "ablation"],
        horizontal=True,
        key="train-mode",
        format_func={"single": "one run", "c-sweep": "sweep over c", "ablation": "ablation set"}.get,
        help="A sweep runs its points one after another in one folder.",
    )
    stamp = datetime.now().strftime("%m%d-%H%M%S")
    default_name = {"single": f"{preset}-{stamp}", "c-sweep": f"sweep-c-{stamp}", "ablation": f"ablation-{stamp}"}[mode]
    name_key = f"train-name-{mode}-{preset}"  # the suggested name follows the preset until edited
    st.session_state.setdefault(name_key, default_name)
    name = st.text_input("Name", key=name_key, help="Folder name under the runs folder.")

    values = {}
    with st.expander("Models and data", expanded=False):
        values["teacher"] = st.text_input(
            "Teacher",
            defaults.teacher,
            key=k("teacher"),
            help="smollm2-135m-instruct (embedded), tiny-random, a HF id or a local folder",
        )
        students = ["pruned", "subset", "random", "tiny-random"]
        student = defaults.student if defaults.student in students else "custom"
        choice = st.selectbox(
            "Student",
            students + ["custom"],
            index=(students + ["custom"]).index(student),
            key=k("student-kind"),
            help="pruned: the teacher with narrower MLPs (starts close "
            "to it, docs/study_regime.md); subset: a few of the teacher's layers; "
            "random: a small random Llama with the teacher's vocabulary",
        )
        values["student"] = (
            st.text_input(
                "Student model (HF id or folder)", defaults.student if student == "custom" else "", key=k("student")
            )
            if choice == "custom"
            else choice
        )
        if choice == "subset":
            values["student_layers"] = st.text_input(
                "Teacher layers kept",
                ",".join(map(str, defaults.student_layers or [])),
                key=k("layers"),
                help="Comma-separated layer indices; empty = evenly spaced",
            )
        if choice == "pruned":
            values["student_mlp_keep"] = st.number_input(
                "MLP neurons kept per layer",
                1,
                65_536,
                defaults.student_mlp_keep,
                key=k("mlp-keep"),
                help="Of the teacher's MLP width (1,536 for SmolLM2-135M), ranked by activation on training text",
            )
        if choice == "random":
            c1, c2 = st.columns(2)
            values["random_layers"] = c1.number_input("Layers", 1, 64, defaults.random_layers, key=k("rl"))
            values["random_hidden"] = c2.number_input("Hidden size", 8, 8192, defaults.random_hidden, key=k("rh"))
        values["data"] = st.text_input(
            "Training data",
            defaults.data,
            key=k("data"),
            help="chatterbot (built in) or a Dolly JSONL / Alpaca JSON file",
        )
        values["max_train_examples"] = st.number_input(
            "Max training examples (0 = all)", 0, 10_000_000, defaults.max_train_examples or 0, key=k("mte")
        )

    st.markdown("**AdaKD**")
    c1, c2 = st.columns(2)
    values["divergence"] = c1.selectbox(
        "Base divergence",
        DIVERGENCES,
        DIVERGENCES.index(defaults.divergence),
        key=k("div"),
        help="rkl is the paper's main base",
    )
    values["latf"] = c2.selectbox(
        "LATF / r schedule",
        LATF_KINDS,
        LATF_KINDS.index(defaults.latf),
        key=k("latf"),
        help="adaptive = LATF; off = all tokens; fixed/linear/cosine = ablation schedules",
        disabled=mode == "ablation",
    )
    if values["latf"] in ("fixed", "linear", "cosine") and mode != "ablation":
        c1, c2 = st.columns(2)
        values["ratio_start"] = c1.slider(
            "r start" if values["latf"] != "fixed" else "r", 0.05, 1.0, float(defaults.ratio_start), 0.05, key=k("r0")
        )
        if values["latf"] != "fixed":
            values["ratio_end"] = c2.slider("r end", 0.05, 1.0, float(defaults.ratio_end), 0.05, key=k("r1"))
    c1, c2 = st.columns(2)
    values["idts"] = (
        c1.segmented_control(
            "IDTS",
            IDTS_MODES,
            default=defaults.idts,
            key=k("idts"),
            disabled=mode == "ablation",
            help="on: hard tokens sharper, easy smoother; inverse: the opposite",
        )
        or defaults.idts
    )
    if mode != "c-sweep":
        values["idts_c"] = c2.slider(
            "IDTS strength c", 0.0, 2.0, float(defaults.idts_c), 0.05, key=k("c"), disabled=values["idts"] == "off"
        )

    st.markdown("**Optimisation**")
    c1, c2, c3 = st.columns(3)
    values["max_steps"] = c1.number_input("Steps", 1, 10_000_000, defaults.max_steps, key=k("steps"))
    values["batch_size"] = c2.number_input("Batch size", 1, 4096, defaults.batch_size, key=k("bs"))
    values["lr"] = c3.number_input("Learning rate", 1e-7, 1.0, float(defaults.lr), format="%.1e", key=k("lr"))
    c1, c2 = st.columns(2)
    values["seed"] = c1.number_input("Seed", 0, 2**31 - 1, defaults.seed, key=k("seed"))
    values["device"] = c2.selectbox(
        "Device", DEVICES, DEVICES.index(defaults.device), key=k("device"), help="auto: CUDA, then Apple MPS, then CPU"
    )

    grid = {}
    if mode == "c-sweep":
        grid["idts_c"] = st.text_input("c values", "0.1,0.3,0.5,0.7,0.9", key="train-grid-c")
        seeds = st.text_input(
            "Seeds",
            str(values["seed"]),
            key="train-grid-seed",
            help="Several seeds (e.g. 0,1,2) give error bars on the Compare page",
        )
        if seeds.strip() and seeds.strip() != str(values["seed"]):
            grid["seed"] = seeds
    elif mode == "ablation":
        st.caption("Four runs: base (LATF off, IDTS off), +IDTS, +LATF, full AdaKD — the paper's Table 2.")
        grid["ablation"] = ""
    extra = st.text_area(
        "More settings (key=value, one per line)",
        key=k("extra"),
        height=80,
        placeholder="probe_interval=5\neval_examples=32",
        help="Any RunConfig field, as with --set on the command line.",
    )

    request = None
    try:
        request = build_request(mode, preset, values, extra, grid, name, defaults, root)
    except ValueError as err:
        st.error(str(err), icon=":material/error:")
    if request is not None:
        ui.remote_code_notice(request.config)
        st.code(request.display, language="bash", wrap_lines=True)
        if st.button(
            "Start" if mode == "single" else "Start sweep",
            type="primary",
            key="train-launch",
            icon=":material/play_arrow:",
        ):
            try:
                job = jobs.submit(
                    root,
                    request.kind,
                    request.args,
                    request.run_dir,
                    request.device,
                    log_name="train.log" if mode == "single" else "sweep.log",
                    label=request.kind,
                )
            except (RuntimeError, OSError) as err:
                st.error(f"Could not start: {err}")
            else:
                st.session_state["train-watch"] = str(request.run_dir)
                st.session_state.pop(name_key, None)
                blocked = jobs.queue_position(job, jobs.list_jobs(root))[1]
                st.toast(f"{'Queued' if blocked else 'Started'} {job.name}")
                st.rerun()

with live_col:
    live_panel(root)
