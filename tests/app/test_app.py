"""AppTest on every dashboard page: sample_runs/ plus hand-made runs, damaged runs, no runs,
the token explorer on tiny random models, the report bundle, and a real smoke training run
launched, stopped and resumed from the Train page.

The pages run in this process (AppTest), reading runs from $ADAKD_RUNS (a temp folder of
runs written by tests/rundir_factory.py) and from the repository's sample_runs/.
"""

from __future__ import annotations

import io
import json
import math
import signal
import sys
import time
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from analysis import runs as analysis_runs
from app import jobs
from tests.rundir_factory import append_garbage, make_run

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = [
    "views/runs.py",
    "views/train.py",
    "views/dynamics.py",
    "views/gradients.py",
    "views/temperature.py",
    "views/compare.py",
    "views/explorer.py",
    "views/export.py",
]
TITLES = {
    "views/runs.py": "Runs",
    "views/train.py": "Train",
    "views/dynamics.py": "Token dynamics",
    "views/gradients.py": "Gradients",
    "views/temperature.py": "Temperature & entropy",
    "views/compare.py": "Compare",
    "views/explorer.py": "Token explorer",
    "views/export.py": "Report bundle",
}
# Plotly charts each page draws for one probed, evaluated run (Compare, Token dynamics: their
# open first tab).
CHARTS = {
    "views/runs.py": 0,
    "views/train.py": 2,
    "views/dynamics.py": 1,
    "views/gradients.py": 2,
    "views/temperature.py": 1,
    "views/compare.py": 1,
    "views/explorer.py": 0,
    "views/export.py": 0,
}


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    """Hand-made runs: an AdaKD run and a plain KD run (probed, evaluated, checkpointed), two
    more c values for the c sweep, and a damaged run (a garbage line in metrics.jsonl)."""
    root = tmp_path_factory.mktemp("runs")
    make_run(
        root,
        "adakd-c0.3",
        config={"idts_c": 0.3},
        steps=20,
        probe_steps=[0, 10, 20],
        checkpoints=[20],
        final_rouge={"chatterbot": 31.5},
        meta={"started_at": "2026-01-03T00:00:00Z"},
    )
    make_run(
        root,
        "plain-kd",
        config={"latf": "off", "idts": "off"},
        steps=20,
        probe_steps=[0, 10, 20],
        final_rouge={"chatterbot": 29.0},
        loss_scale=1.2,
        meta={"started_at": "2026-01-02T00:00:00Z"},
    )
    for c, score in ((0.1, 30.0), (0.9, 30.5)):
        make_run(
            root,
            f"adakd-c{c}",
            config={"idts_c": c},
            steps=20,
            tokens=False,
            gradients=False,
            final_rouge={"chatterbot": score},
        )
    damaged = make_run(root, "damaged", steps=6)
    append_garbage(damaged / "metrics.jsonl")
    return root


@pytest.fixture
def env(monkeypatch, runs_root):
    monkeypatch.setenv("ADAKD_RUNS", str(runs_root))
    return runs_root


def open_page(page: str, selected: list[Path] | None = None, timeout: float = 60) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=timeout)
    if selected is not None:
        at.session_state["selected_runs"] = [str(p) for p in selected]
    at.run()
    if page != "views/runs.py":
        at.switch_page(page).run()
    return at


def no_failure(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_a_probed_run(env, page):
    at = open_page(page, selected=[env / "adakd-c0.3", env / "plain-kd"])
    no_failure(at)
    assert at.title[0].value == TITLES[page]
    assert at.caption[0].value  # the one-line explanation under the title
    figs = charts(at)
    assert len(figs) >= CHARTS[page]
    for fig in figs:  # every chart carries data, not just an empty frame
        assert fig["data"], f"empty chart on {page}"
    downloads = [b.proto.label for b in at.get("download_button")]
    for fmt in ("PNG", "SVG", "PDF", "HTML", "CSV"):  # every figure has its export buttons
        assert downloads.count(fmt) >= CHARTS[page], (page, fmt, downloads)


def test_dynamics_page_shows_the_selected_run_one_tab_at_a_time(env):
    """Each tab draws its own chart of the selected run and none of the others'; the open tab
    is written to the URL."""
    at = open_page("views/dynamics.py", selected=[env / "plain-kd"])
    titles = {
        "Loss and r": "Loss and LATF ratio — plain-kd",
        "Difficulty heat map": "Token difficulty, probe example 0 — plain-kd",
        "Token groups": "Difficulty by token group — plain-kd",
    }
    for tab, title in titles.items():
        at.session_state["dynamics-tab"] = tab  # what a click on the tab does
        at.run()
        no_failure(at)
        assert [f["layout"]["title"]["text"] for f in charts(at)] == [title], tab
        assert at.query_params["dynamics-tab"] in (tab, [tab])
    # the heat map holds the 8 probe tokens of example 0 at the 3 probe steps
    at.session_state["dynamics-tab"] = "Difficulty heat map"
    at.run()
    heat = next(f for f in charts(at) if f["data"][0]["type"] == "heatmap")
    assert len(heat["data"][0]["y"]) == 8 and heat["data"][0]["x"] == [0, 10, 20]


def test_dynamics_tabs_of_a_run_without_probes_say_so(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    run = make_run(root, "unprobed", steps=5, tokens=False, gradients=False)
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/dynamics.py", selected=[run])
    no_failure(at)
    assert len(charts(at)) == 1  # the loss curve needs no probes
    for tab in ("Difficulty heat map", "Token groups"):
        at.session_state["dynamics-tab"] = tab
        at.run()
        no_failure(at)
        assert not charts(at) and any("has no probe data" in i.value for i in at.info), tab


def test_compare_defaults_to_one_sweep_not_every_run(env):
    """One selected run of a sweep: Compare starts on that sweep's runs; two selected: those."""
    ablation = sorted((analysis_runs.SAMPLE_RUNS_DIR / "ablation").glob("seed=*"))
    assert len(ablation) >= 2  # the committed sample study
    at = open_page("views/compare.py", selected=[ablation[0]])
    no_failure(at)
    assert sorted(at.multiselect[0].value) == sorted(str(p) for p in ablation)
    at = open_page("views/compare.py", selected=[env / "adakd-c0.3", env / "plain-kd"])
    assert sorted(at.multiselect[0].value) == sorted([str(env / "adakd-c0.3"), str(env / "plain-kd")])


def test_compare_computes_only_its_open_tab_and_keeps_it_in_the_url(env):
    """Each tab, when open, draws its own content and none of the others' (chart titles,
    subheaders); the open tab is written to the URL, and a link with it opens that tab."""
    shown = {
        "Loss curves": (["kd over training"], []),
        "IDTS strength c": (["ROUGE-L against IDTS strength c"], []),
        "Tables": ([], ["Results", "By paper table", "Ablation"]),
        "Token diff": (["Difficulty: adakd-c0.3 vs plain-kd"], []),
    }
    selected = [str(env / "adakd-c0.3"), str(env / "plain-kd")]

    def drawn(at):
        return [f["layout"]["title"]["text"] for f in charts(at)], [h.value for h in at.subheader]

    at = open_page("views/compare.py", selected=[Path(p) for p in selected])
    for tab, expected in shown.items():
        at.session_state["compare-tab"] = tab  # what a click on the tab does
        at.run()
        no_failure(at)
        assert drawn(at) == expected, tab
        assert at.query_params["compare-tab"] in (tab, [tab])
    link = AppTest.from_file(MAIN, default_timeout=60)  # a fresh session opened by the link
    link.session_state["selected_runs"] = selected
    link.run()
    link.switch_page("views/compare.py")
    link.query_params["compare-tab"] = "Tables"
    link.run()
    assert drawn(link) == shown["Tables"]


def test_compare_curves_in_log_scale_and_over_seeds():
    """The sample ablation's three seeds per arm: with "Mean ± std over seeds" each arm is one
    mean line (and its band); "Log scale" turns the y axis logarithmic."""
    ablation = sorted((analysis_runs.SAMPLE_RUNS_DIR / "ablation").glob("seed=*"))
    at = open_page("views/compare.py", selected=[ablation[0]])
    at.toggle(key="compare-aggregate").set_value(True).run()
    at.toggle(key="compare-log-y").set_value(True).run()
    no_failure(at)
    curves = next(f for f in charts(at) if f["layout"]["title"]["text"] == "kd over training")
    means = [t["name"] for t in curves["data"] if t["name"].endswith("seeds)")]
    assert sorted(means) == ["rkl (mean ± std, 3 seeds)", "rkl + AdaKD (mean ± std, 3 seeds)"]
    assert curves["layout"]["yaxis"]["type"] == "log"


def test_comparison_default_without_a_sweep_selection():
    import pandas as pd

    from app.components import comparison_default

    table = pd.DataFrame({"path": ["/r/own", "/s/abl/a", "/s/abl/b", "/s/c/x"], "sweep": ["", "abl", "abl", "c"]})
    # a run outside any sweep selected: the first sweep in the table's order
    assert comparison_default(table, ["/r/own"]) == ["/s/abl/a", "/s/abl/b"]
    assert comparison_default(table, ["/s/c/x"]) == ["/s/c/x"]
    no_sweeps = table[table["sweep"] == ""]
    assert comparison_default(no_sweeps, []) == ["/r/own"]


def test_runs_page_lists_runs_and_warns_about_the_damaged_one(env):
    at = open_page("views/runs.py")
    no_failure(at)
    table = at.dataframe[0].value
    assert {"adakd-c0.3", "plain-kd", "damaged", "adakd-c0.1"} <= set(table["name"])
    warnings = " ".join(w.value for w in at.warning)
    assert "damaged" in warnings and "metrics.jsonl line 7" in warnings
    # good runs still work: the default run is the newest finished one of our own
    assert at.subheader[0].value == "adakd-c0.3"


def test_runs_page_shows_the_stored_replies_and_flags_empty_ones(env):
    """A final student whose stored replies are mostly empty is flagged; one that answers is not."""

    def run_with_replies(name: str, replies: list[str]):
        samples = [
            {"instruction": f"question {i}", "reference": "a reference reply", "response": r, "rouge_l": 0.0}
            for i, r in enumerate(replies)
        ]
        record = {"step": 10, "model": "student", "rouge_l": {"chat": 1.0}, "rouge_l_avg": 1.0, "n": {"chat": 3}}
        return make_run(env, name, evals=[{**record, "samples": {"chat": samples}}])

    silent = run_with_replies("silent-student", ["", " ", "an answer"])
    at = open_page("views/runs.py", selected=[silent])
    no_failure(at)
    assert any("stored replies are empty" in w.value for w in at.warning)
    assert any(e.label.startswith("Final student's replies") for e in at.expander)
    talking = run_with_replies("talking-student", ["one answer", "", "another answer"])
    at = open_page("views/runs.py", selected=[talking])
    assert not any("stored replies are empty" in w.value for w in at.warning)


def test_delete_needs_confirmation_and_never_touches_sample_runs(env, tmp_path, monkeypatch):
    victim = make_run(env, "to-delete", steps=2, meta={"started_at": "2026-02-01T00:00:00Z"})
    at = open_page("views/runs.py", selected=[victim])
    delete = next(b for b in at.button if b.label.startswith("Delete the 1 checked"))
    delete.click().run()
    assert victim.exists()  # only asked
    assert any("for good" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Yes, delete").click().run()
    no_failure(at)
    assert not victim.exists()
    assert "to-delete" not in set(at.dataframe[0].value["name"])

    samples = tmp_path / "samples"
    sample = make_run(samples, "sample-run", steps=2)
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", samples)
    at = open_page("views/runs.py", selected=[sample])
    no_failure(at)
    assert not [b for b in at.button if b.label.startswith("Delete")]
    assert any("read-only" in c.value for c in at.caption)
    assert sample.exists()


def test_pages_explain_what_to_do_when_there_are_no_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    for page in PAGES:
        at = open_page(page)
        no_failure(at)
        text = " ".join(i.value for i in at.info)
        if page in ("views/train.py", "views/explorer.py"):
            assert "Nothing has been trained here yet" in text or "Analyse" in text or "No runs yet" in text
        else:
            assert "No runs yet" in text, (page, text)


def test_train_form_shows_the_config_error_and_no_start_button(env):
    at = open_page("views/train.py")
    at.text_area(key="train-demo-extra").input("lr=5\n").run()
    assert any("lr = 5.0 is out of range" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "train-launch"]
    at.text_area(key="train-demo-extra").input("probe_interval=5").run()
    no_failure(at)
    assert "--set probe_interval=5" in at.code[0].value


def test_explorer_on_tiny_models_scores_tokens_and_attributes(env):
    at = open_page("views/explorer.py", timeout=180)
    at.radio(key="explorer-source").set_value("tiny").run()
    at.text_area(key="explorer-prompt").input("Name a colour.")
    at.text_area(key="explorer-reference").input("Blue is a colour.")
    at.button(key="FormSubmitter:explorer-form-Analyse").click().run()
    no_failure(at)
    tokens_fig, topk_fig = charts(at)[:2]
    assert tokens_fig["data"][0]["type"] == "heatmap"
    assert "reference" in tokens_fig["layout"]["title"]["text"]
    assert any("Blue is a colour." in m.value for m in at.markdown)
    assert topk_fig["data"][0]["type"] == "bar" and len(topk_fig["data"]) == 2
    at.selectbox(key="explorer-token").set_value(0).run()
    at.button(key="explorer-attribute").click().run()
    no_failure(at)
    attribution = charts(at)[-1]
    assert [d["x"] for d in attribution["data"]] == [["teacher"], ["student"]]


def test_report_bundle_page_builds_a_zip(env):
    at = open_page("views/export.py", selected=[env / "adakd-c0.3", env / "plain-kd"])
    at.multiselect(key="export-per-run").set_value(["loss-ratio"])
    at.multiselect(key="export-several").set_value(["loss-curves"])
    at.button_group(key="export-formats").set_value(["html"]).run()
    at.button(key="export-build").click().run()
    no_failure(at)
    data = at.session_state["export-bundle"]
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert {
        "figures/adakd-c0.3-loss-ratio.html",
        "figures/plain-kd-loss-ratio.html",
        "figures/loss-curves.html",
        "data/loss-curves.csv",
        "provenance.json",
        "runs/adakd-c0.3/config.json",
    } <= set(names)
    assert [b for b in at.get("download_button") if b.proto.label == "Download adakd-report.zip"]
    assert not charts(at)  # the closed preview draws nothing; opened, it draws the chosen figure
    at.session_state["export-preview-open"] = True
    at.run()
    no_failure(at)
    assert [f["layout"]["title"]["text"] for f in charts(at)] == ["Loss and LATF ratio — adakd-c0.3"]


# ---------------------------------------------------------------- a real smoke run


def wait(at: AppTest, predicate, timeout: float, what: str):
    """Re-run the app (AppTest does not tick run_every timers) until predicate() holds."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            at.run()
            return value
        time.sleep(0.5)
    at.run()
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def metric_steps(run_dir: Path) -> list[int]:
    try:
        return [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError):
        return []


@pytest.mark.slow
def test_train_page_launches_stops_and_resumes_a_smoke_run(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    run_dir = root / "smoke-app"
    make_run(root, "older", steps=3)  # watched first: Start must switch the panel to the new run
    try:
        at = open_page("views/train.py")
        assert at.selectbox(key="train-watch-select").value == str(root / "older")
        at.selectbox(key="train-preset").set_value("smoke").run()
        at.text_input(key="train-name-single-smoke").input("smoke-app").run()
        # enough steps that Stop lands mid-run even on a fast machine
        at.text_area(key="train-smoke-extra").input("max_steps=40\nprobe_interval=2").run()
        no_failure(at)
        at.button(key="train-launch").click().run()
        no_failure(at)
        assert at.selectbox(key="train-watch-select").value == str(run_dir)  # follows the new run

        wait(at, lambda: metric_steps(run_dir), 180, "the first logged step")
        no_failure(at)
        bar = at.get("progress")[0]
        assert "step" in bar.proto.text and "/ 40" in bar.proto.text
        assert len(charts(at)) >= 1  # live loss / r curve
        assert (run_dir / "train.log").exists()

        at.button(key=f"stop-{run_dir}").click().run()
        if jobs.list_jobs(root):  # still checkpointing: the button says so at once
            assert any(b.key == f"stopping-{run_dir}" and b.disabled for b in at.button)
            assert not any(b.key == f"stop-{run_dir}" for b in at.button)
        wait(at, lambda: status(run_dir).get("state") == "stopped" and not jobs.list_jobs(root), 120, "the run to stop")
        no_failure(at)
        stopped_at = status(run_dir)["step"]
        assert 1 <= stopped_at < 40
        assert (run_dir / "checkpoints" / f"step-{stopped_at:06d}").is_dir()
        assert any("Stopped at step" in c.value for c in at.caption)

        at.button(key=f"resume-{run_dir}").click().run()
        wait(at, lambda: max(metric_steps(run_dir), default=0) > stopped_at, 180, "a step after resuming")
        no_failure(at)
        assert any(b.key == f"stop-{run_dir}" for b in at.button)  # running again
        log = (run_dir / "train.log").read_text()
        assert log.count("[dashboard]") >= 4 and " resume " in log
        at.button(key=f"stop-{run_dir}").click().run()
        wait(at, lambda: not jobs.list_jobs(root), 120, "the resumed run to stop")
        assert status(run_dir)["state"] == "stopped"
    finally:
        for job in jobs.list_jobs(root):  # never leave a training process behind
            jobs.stop(root, job, signal.SIGKILL)


def test_train_page_shows_the_queue_and_a_failed_start(tmp_path, monkeypatch):
    from tests.app.test_app_jobs import fake

    root = tmp_path / "runs"
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    try:
        first = jobs.submit(root, "train", [], root / "first", "cpu", argv=fake(root / "first"))
        jobs.submit(root, "train", [], root / "second", "cpu", argv=fake(root / "second"))
        broken = [sys.executable, "-c", "import sys; print('error: teacher path nope does not exist'); sys.exit(2)"]
        jobs.submit(root, "train", [], root / "broken", "testdev", argv=broken)
        deadline = time.time() + 30
        while time.time() < deadline and not (
            any(j.name == "first" and j.state == "running" for j in jobs.list_jobs(root))
            and jobs.job_for_run(root, root / "broken", include_exited=True).state == "exited"
        ):
            time.sleep(0.2)
        at = open_page("views/train.py")
        infos = " ".join(i.value for i in at.info)
        assert "`second` is queued for cpu (position 1) — waiting for `first` to finish" in infos
        at.selectbox(key="train-watch-select").set_value(str(root / "broken")).run()
        assert any("ended before it started (exit code 2)" in e.value for e in at.error)
        assert any("teacher path nope does not exist" in c.value for c in at.code)
        at.selectbox(key="train-watch-select").set_value(str(root / "second")).run()
        assert any(b.label == "Cancel" for b in at.button)  # a queued job can be cancelled
        assert not at.exception
    finally:
        for job in jobs.list_jobs(root):
            jobs.stop(root, job, signal.SIGKILL)
    assert first.name == "first"


def test_explorer_reports_a_broken_checkpoint_as_a_message(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    run = make_run(
        root, "tiny-broken", config={"teacher": "tiny-random", "student": "tiny-random"}, steps=4, checkpoints=[4]
    )  # an empty model.safetensors: unreadable weights
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/explorer.py", selected=[run], timeout=180)
    assert at.selectbox(key=f"explorer-step-{run}").value == 4  # the latest checkpoint by default
    at.button(key="FormSubmitter:explorer-form-Analyse").click().run()
    assert not at.exception
    assert any(e.value.startswith("Could not analyse the prompt") for e in at.error)


def test_dynamics_page_shows_the_student_data_panel_of_a_regime_run(tmp_path, monkeypatch):
    from tests.unit.test_analysis_regime import regime_metrics

    root = tmp_path / "runs"
    run = make_run(
        root,
        "gkd-run",
        config={"regime": "gkd", "gkd_lambda": 0.5},
        steps=5,
        metrics=regime_metrics(),
        probe_steps=[0, 5],
    )
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/dynamics.py", selected=[run])
    no_failure(at)
    assert "Student-generated data" in [h.value for h in at.subheader]
    panel = next(f for f in charts(at) if f["layout"]["title"]["text"] == "Student data (gkd) — gkd-run")
    by_name = {t["name"]: t for t in panel["data"]}
    assert _values(by_name["buffer size"]["y"]) == [0, 4, 4, 8, 8]  # the metrics' buffer_size, steps 1..5
    assert _values(by_name["generated length"]["x"]) == [2, 3, 4]  # only the steps trained on student data
    # a ground-truth run has no such panel
    plain = make_run(root, "plain", steps=5, probe_steps=[0, 5])
    at = open_page("views/dynamics.py", selected=[plain])
    assert "Student-generated data" not in [h.value for h in at.subheader]


def _values(data) -> list:
    """A trace's values from the chart spec: a list, or Plotly's base64 typed array."""
    if isinstance(data, dict) and "bdata" in data:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"]).tolist()
    return list(data)


def test_explorer_says_when_a_finished_run_shows_its_untrained_student(tmp_path, monkeypatch, isolated_cache):
    root = tmp_path / "runs"
    run = make_run(root, "no-weights", config={"teacher": "tiny-random", "student": "tiny-random"}, steps=4)
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/explorer.py", selected=[run])
    no_failure(at)
    assert at.selectbox(key=f"explorer-step-{run}").options == ["at initialisation (untrained)"]
    assert any("not the trained one" in w.value for w in at.warning)
    assert at.button(key=f"rebuild-{run}").label == "Rebuild the trained student"


def test_runs_page_draws_the_ctkd_temperature_of_a_ctkd_run(tmp_path, monkeypatch):
    from tests.rundir_factory import make_metrics

    config = {"idts": "off", "ctkd": True}
    metrics = make_metrics(5, config)
    taus = [1.0, 1.01, 1.03, 1.02, 1.05]
    for record, tau, step in zip(metrics, taus, range(5), strict=True):
        record.update(ctkd_tau=tau, ctkd_lambda=0.5 * (1 + math.cos(math.pi * step / 4)))
    root = tmp_path / "runs"
    run = make_run(root, "ctkd-run", config=config, steps=5, metrics=metrics, probe_steps=[0, 5])
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/runs.py", selected=[run])
    no_failure(at)
    panel = next(f for f in charts(at) if f["layout"]["title"]["text"] == "CTKD temperature — ctkd-run")
    by_name = {t["name"]: t for t in panel["data"]}
    assert _values(by_name["τ (learned)"]["y"]) == pytest.approx(taus)
    assert _values(by_name["λ (GRL strength)"]["y"])[0] == 1.0
    plain = make_run(root, "plain", steps=5, probe_steps=[0, 5])  # no CTKD: no such chart
    assert not charts(open_page("views/runs.py", selected=[plain]))


def test_runs_page_shows_the_validity_gate(tmp_path, monkeypatch):
    from tests.unit.test_analysis_validity import _record

    def evals(final_rouge, final_ce):
        return [
            _record("teacher", 0, 20.0, 0.4, 2.0),
            _record("student_init", 0, 8.0, 0.3, 5.0),
            _record("student", 10, final_rouge, 0.5, final_ce),
        ]

    root = tmp_path / "runs"
    good = make_run(root, "learns", evals=evals(14.0, 3.0))
    stuck = make_run(root, "stuck", evals=evals(8.5, 4.9))
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/runs.py", selected=[good])
    assert not at.exception
    assert any(s.value.startswith("Validity gate passes") for s in at.success)
    at = open_page("views/runs.py", selected=[stuck])
    assert not at.exception
    assert any(e.value.startswith("Validity gate FAILS") and "not findings" in e.value for e in at.error)


def test_compare_flags_runs_that_are_no_basis_for_a_comparison(tmp_path, monkeypatch):
    from tests.unit.test_analysis_validity import _record

    evals = {
        "learns": [_record("teacher", 0, 20.0, 0.4, 2.0), _record("student_init", 0, 8.0, 0.3, 5.0)],
        "stuck": [_record("teacher", 0, 20.0, 0.4, 2.0), _record("student_init", 0, 8.0, 0.3, 5.0)],
    }
    root = tmp_path / "runs"
    good = make_run(root, "learns", evals=[*evals["learns"], _record("student", 10, 14.0, 0.5, 3.0)])
    stuck = make_run(root, "stuck", evals=[*evals["stuck"], _record("student", 10, 8.5, 0.5, 4.9)])
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/compare.py", selected=[good, stuck])
    no_failure(at)
    flags = [w.value for w in at.warning if "Not a sound basis" in w.value]
    assert len(flags) == 1 and "**stuck**: fails the validity gate on ROUGE-L" in flags[0]
    assert "learns" not in flags[0]
    at.multiselect(key="compare-runs").set_value([str(good)]).run()
    no_failure(at)
    assert not [w for w in at.warning if "Not a sound basis" in w.value]


def test_runs_page_draws_the_competence_curve_of_a_run_evaluated_during_training(tmp_path, monkeypatch):
    from tests.unit.test_analysis_competence import _record

    evals = [_record(0, "teacher", 2.0, 0.0, None, 12.0), _record(0, "student_init", 6.0, 0.02, 3.0, 6.0)]
    evals += [_record(step, "student", ce, 0.01, 2.0, 9.0) for step, ce in ((5, 5.0), (10, 4.0))]
    root = tmp_path / "runs"
    curve = make_run(root, "curve", steps=10, evals=evals)
    once = make_run(root, "once", steps=10, evals=evals[:2] + evals[-1:])
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    at = open_page("views/runs.py", selected=[curve])
    no_failure(at)
    panel = next(f for f in charts(at) if f["layout"]["title"]["text"] == "Competence over training — curve")
    gap = next(t for t in panel["data"] if t["name"] == "CE gap closed (%)")
    assert _values(gap["y"]) == pytest.approx([0.0, 25.0, 50.0])  # (6 − CE) / (6 − 2), by hand
    at = open_page("views/runs.py", selected=[once])  # evaluated only at its end: no curve to draw
    no_failure(at)
    assert not any(e.label.startswith("Competence over training") for e in at.expander)


def test_runs_page_saves_tags_and_filters_by_them_and_by_search(tmp_path, monkeypatch):
    """Tags typed in the form land in notes.json and the table; the tag filter and the search
    box narrow the table (kept in the URL); with no row checked the details ask for one."""
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path))
    first = make_run(tmp_path, "lr-a", steps=2, meta={"started_at": "2026-03-02T00:00:00Z"})
    second = make_run(tmp_path, "lr-b", steps=2, meta={"started_at": "2026-03-01T00:00:00Z"})
    make_run(tmp_path, "other", steps=2, config={"latf": "off", "idts": "off"})
    at = open_page("views/runs.py", selected=[first])
    no_failure(at)
    assert at.subheader[0].value == "lr-a"
    at.text_input[1].set_value("Baseline, lr sweep")  # the form's Tags field (0 is the search box)
    at.text_area[0].set_value("first try")
    next(b for b in at.button if b.label == "Save").click().run()
    no_failure(at)
    saved = json.loads((first / "notes.json").read_text())
    assert saved["tags"] == ["Baseline", "lr sweep"] and saved["notes"] == "first try"
    table = at.dataframe[0].value
    assert table.set_index("name").loc["lr-a", "tags"] == "Baseline, lr sweep"
    assert table.set_index("name").loc["lr-b", "tags"] == ""

    at.multiselect(key="runs-filter-tags").set_value(["lr sweep"]).run()
    no_failure(at)
    assert at.dataframe[0].value["name"].tolist() == ["lr-a"]
    at.multiselect(key="runs-filter-tags").set_value([]).run()
    at.text_input(key="runs-search").set_value("LR-").run()  # words match in any case
    no_failure(at)
    assert sorted(at.dataframe[0].value["name"]) == ["lr-a", "lr-b"]
    assert dict(at.query_params)["runs-search"] == "LR-"
    at.text_input(key="runs-search").set_value("try").run()  # the notes are searched too
    assert at.dataframe[0].value["name"].tolist() == ["lr-a"]
    at.text_input(key="runs-search").set_value("nothing-like-this").run()
    no_failure(at)
    assert at.dataframe[0].value.empty
    assert any("Check a row" in i.value for i in at.info)
    assert not [b for b in at.button if b.label.startswith("Delete")]  # acts only on checked rows
    assert second.exists()


def test_a_heatmap_token_opens_the_explorer_on_its_probe_example(tmp_path, monkeypatch, isolated_cache):
    """Token dynamics → "Open in the Token explorer": the explorer is on that run, with the
    probe example's prompt and reply as training saw them (adakd.training.runsetup.probe_examples),
    analysed at once, at that token; the group marks put H / M letters in the heat map."""
    from adakd.config import RunConfig
    from adakd.presets import PRESETS
    from adakd.training.runsetup import probe_examples, run_tokenizer

    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path))
    config = dict(PRESETS["smoke"])
    run = make_run(tmp_path, "linked", config=config, steps=4, probe_steps=[0, 4], n_examples=2, n_tokens=6)
    at = open_page("views/dynamics.py", selected=[run], timeout=180)
    no_failure(at)
    at.session_state["dynamics-tab"] = "Difficulty heat map"
    at.run()
    at.selectbox(key="dynamics-example").set_value(1).run()
    at.toggle(key="dynamics-heatmap-groups").set_value(True).run()
    heat = next(c for c in charts(at) if c["data"][0]["type"] == "heatmap")["data"][0]
    letters = {t for row in heat["text"] for t in row}
    assert letters <= {"H", "M", ""} and "H" in letters
    at.selectbox(key="dynamics-token").set_value(3).run()
    at.button(key="dynamics-open").click().run()
    no_failure(at)

    full = RunConfig.from_dict({**RunConfig().to_dict(), **config, "max_steps": 4})
    example = probe_examples(full, run_tokenizer(full))[1]
    assert at.text_area(key="explorer-prompt").value == example.instruction
    assert at.text_area(key="explorer-reference").value == example.response
    assert at.radio(key="explorer-source").value == "run"
    assert any("Opened from probe example 1, token 3" in i.value for i in at.info)
    assert at.selectbox(key="explorer-token").value == 3
    assert charts(at)[0]["data"][0]["type"] == "heatmap"  # analysed without pressing Analyse
    assert int(at.session_state["explorer-result"].tokens["difficulty"].idxmax()) != 3  # not the default

    # moving r re-scores the same reply: the chosen token stays (AppTest reruns the page it
    # started on after st.switch_page, where a browser stays on the new page: switch explicitly)
    at.switch_page("views/explorer.py").run()
    at.slider(key="explorer-r").set_value(0.75)
    at.button(key="FormSubmitter:explorer-form-Analyse").click().run()
    no_failure(at)
    assert at.selectbox(key="explorer-token").value == 3
