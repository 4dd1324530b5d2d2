"""Train: a form over the run config that launches `python -m adakd train|sweep`, and live progress."""

from datetime import datetime

import streamlit as st

from adakd.config import DEVICES, DIVERGENCES, IDTS_MODES, LATF_KINDS, RunConfig, value_range
from adakd.config_docs import form_help
from adakd.presets import PRESETS
from app import components as ui
from app import jobs, live, state
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
            help=form_help("teacher"),
        )
        students = ["pruned", "subset", "random", "tiny-random"]
        student = defaults.student if defaults.student in students else "custom"
        choice = st.selectbox(
            "Student",
            students + ["custom"],
            index=(students + ["custom"]).index(student),
            key=k("student-kind"),
            help=form_help("student"),
        )
        values["student"] = (
            st.text_input(
                "Student model (HF id or folder)",
                defaults.student if student == "custom" else "",
                key=k("student"),
                help=form_help("student"),
            )
            if choice == "custom"
            else choice
        )
        if choice == "subset":
            values["student_layers"] = st.text_input(
                "Teacher layers kept",
                ",".join(map(str, defaults.student_layers or [])),
                key=k("layers"),
                help=form_help("student_layers"),
            )
        if choice == "pruned":
            values["student_mlp_keep"] = st.number_input(
                "MLP neurons kept per layer",
                *value_range("student_mlp_keep"),
                defaults.student_mlp_keep,
                key=k("mlp-keep"),
                help=form_help("student_mlp_keep"),
            )
        if choice == "random":
            c1, c2 = st.columns(2)
            values["random_layers"] = c1.number_input(
                "Layers",
                *value_range("random_layers"),
                defaults.random_layers,
                key=k("rl"),
                help=form_help("random_layers"),
            )
            values["random_hidden"] = c2.number_input(
                "Hidden size",
                *value_range("random_hidden"),
                defaults.random_hidden,
                key=k("rh"),
                help=form_help("random_hidden"),
            )
        values["data"] = st.text_input(
            "Training data",
            defaults.data,
            key=k("data"),
            help=form_help("data"),
        )
        values["max_train_examples"] = st.number_input(
            "Max training examples (0 = all)",
            0,  # the form's "all" (the setting's null)
            value_range("max_train_examples")[1],
            defaults.max_train_examples or 0,
            key=k("mte"),
            help=form_help("max_train_examples"),
        )

    st.markdown("**AdaKD**")
    c1, c2 = st.columns(2)
    values["divergence"] = c1.selectbox(
        "Base divergence",
        DIVERGENCES,
        DIVERGENCES.index(defaults.divergence),
        key=k("div"),
        help=form_help("divergence"),
    )
    values["latf"] = c2.selectbox(
        "LATF / r schedule",
        LATF_KINDS,
        LATF_KINDS.index(defaults.latf),
        key=k("latf"),
        help=form_help("latf"),
        disabled=mode == "ablation",
    )
    if values["latf"] in ("fixed", "linear", "cosine") and mode != "ablation":
        c1, c2 = st.columns(2)
        values["ratio_start"] = c1.slider(
            "r start" if values["latf"] != "fixed" else "r",
            0.05,
            1.0,
            float(defaults.ratio_start),
            0.05,
            key=k("r0"),
            help=form_help("ratio_start"),
        )
        if values["latf"] != "fixed":
            values["ratio_end"] = c2.slider(
                "r end", 0.05, 1.0, float(defaults.ratio_end), 0.05, key=k("r1"), help=form_help("ratio_end")
            )
    c1, c2 = st.columns(2)
    values["idts"] = (
        c1.segmented_control(
            "IDTS",
            IDTS_MODES,
            default=defaults.idts,
            key=k("idts"),
            disabled=mode == "ablation",
            help=form_help("idts"),
        )
        or defaults.idts
    )
    if mode != "c-sweep":
        values["idts_c"] = c2.slider(
            "IDTS strength c",
            0.0,
            2.0,
            float(defaults.idts_c),
            0.05,
            key=k("c"),
            disabled=values["idts"] == "off",
            help=form_help("idts_c"),
        )

    st.markdown("**Optimisation**")
    c1, c2, c3 = st.columns(3)
    values["max_steps"] = c1.number_input(
        "Steps", *value_range("max_steps"), defaults.max_steps, key=k("steps"), help=form_help("max_steps")
    )
    values["batch_size"] = c2.number_input(
        "Batch size", *value_range("batch_size"), defaults.batch_size, key=k("bs"), help=form_help("batch_size")
    )
    values["lr"] = c3.number_input(
        "Learning rate",
        1e-7,  # the setting's range is (0, 1]: a widget needs a smallest value
        float(value_range("lr")[1]),
        float(defaults.lr),
        format="%.1e",
        key=k("lr"),
        help=form_help("lr"),
    )
    c1, c2 = st.columns(2)
    values["seed"] = c1.number_input("Seed", *value_range("seed"), defaults.seed, key=k("seed"), help=form_help("seed"))
    values["device"] = c2.selectbox(
        "Device", DEVICES, DEVICES.index(defaults.device), key=k("device"), help=form_help("device")
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
        help="Any RunConfig field, as with --set on the command line (`python -m adakd settings` lists them "
        "with their defaults and allowed values).",
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
                live.watch(str(request.run_dir))  # the panel follows the run just started
                st.session_state.pop(name_key, None)
                blocked = jobs.queue_position(job, jobs.list_jobs(root))[1]
                st.toast(f"{'Queued' if blocked else 'Started'} {job.name}")
                st.rerun()

with live_col:
    live_panel(root)
