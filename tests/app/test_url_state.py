"""app/url_state.py: choices survive page navigation and reload, and a URL can be shared.

Streamlit's AppTest on the real app/main.py: `switch_page` is the sidebar navigation (the
Compare page's widgets are not drawn on the Runs page, so Streamlit drops their values), and a
new AppTest given the first one's query string is a reload of that URL in a new session."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app import url_state
from tests.app.test_app import MAIN, env, no_failure, runs_root  # noqa: F401 - fixtures

COMPARE = "views/compare.py"


def opened(page: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=60)
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    at.switch_page(page).run()
    no_failure(at)
    return at


def test_compare_choices_survive_navigation_and_reload(env):  # noqa: F811
    chosen = [str(env / "plain-kd"), str(env / "adakd-c0.1"), str(env / "adakd-c0.9")]
    at = opened(COMPARE)
    at.multiselect(key="compare-runs").set_value(chosen).run()
    at.segmented_control(key="compare-metric").set_value("ce").run()
    at.slider(key="compare-smoothing").set_value(0.35).run()
    at.toggle(key="compare-log-y").set_value(True).run()
    no_failure(at)

    at.switch_page("views/runs.py").run()  # away: the widgets are not drawn
    for key in [k for k in at.query_params if k.startswith("compare-")]:
        del at.query_params[key]  # a browser's page change clears the query string; AppTest's does not
    at.switch_page(COMPARE).run()  # and back
    no_failure(at)
    assert at.multiselect(key="compare-runs").value == chosen
    assert at.segmented_control(key="compare-metric").value == "ce"
    assert at.slider(key="compare-smoothing").value == pytest.approx(0.35)
    assert at.toggle(key="compare-log-y").value is True

    # the URL holds the page's choices, runs as ids relative to the runs root
    params = dict(at.query_params)
    assert params["compare-metric"] == "ce" and params["compare-smoothing"] == "0.35"
    assert params["compare-log-y"] == "1"
    ids = at.query_params.get_all("compare-runs") if hasattr(at.query_params, "get_all") else params["compare-runs"]
    assert list(ids) == ["plain-kd", "adakd-c0.1", "adakd-c0.9"]

    # a reload (a new session on the same URL) opens the same view
    fresh = AppTest.from_file(MAIN, default_timeout=60)
    for key in params:
        fresh.query_params[key] = list(ids) if key == "compare-runs" else params[key]
    fresh.run()
    fresh.switch_page(COMPARE).run()
    no_failure(fresh)
    assert fresh.multiselect(key="compare-runs").value == chosen
    assert fresh.segmented_control(key="compare-metric").value == "ce"
    assert fresh.toggle(key="compare-log-y").value is True


def test_a_bad_or_stale_link_falls_back_to_defaults(env):  # noqa: F811
    """A hand-edited value is replaced by the default; a run that no longer exists drops out."""
    at = opened(
        COMPARE,
        {
            "compare-metric": "nonsense",
            "compare-smoothing": "7",  # outside the slider's range
            "compare-log-y": "yes",
            "compare-runs": ["plain-kd", "deleted-long-ago"],
        },
    )
    assert at.segmented_control(key="compare-metric").value == "kd"
    assert at.slider(key="compare-smoothing").value == 0.0
    assert at.toggle(key="compare-log-y").value is False
    assert at.multiselect(key="compare-runs").value == [str(env / "plain-kd")]


def test_run_ids_round_trip(env, monkeypatch):  # noqa: F811
    from app import state

    own = str(Path(state.runs_root()) / "demo-1")
    sample = str(state.sample_root() / "ablation" / "seed=0,ablation=base")
    elsewhere = "/somewhere/else/run"
    assert url_state.run_id(own) == "demo-1"
    assert url_state.run_id(sample) == "sample_runs/ablation/seed=0,ablation=base"
    assert url_state.run_id(elsewhere) == elsewhere
    for path in (own, sample, elsewhere):
        assert url_state.run_path(url_state.run_id(path)) == path


def test_one_run_pages_and_the_explorer_read_their_choices_from_the_url(env):  # noqa: F811
    query = {"dynamics-metric": "ce", "dynamics-split": "paper", "dynamics-example": "9", "dynamics-smoothing": "0.6"}
    at = opened("views/dynamics.py", query)
    assert at.segmented_control(key="dynamics-metric").value == "ce"
    assert at.slider(key="dynamics-smoothing").value == pytest.approx(0.6)
    loss = json.loads(at.get("plotly_chart")[0].proto.spec)["data"]
    assert [t["name"] for t in loss][:2] == ["ce", "ratio r"] and loss[-1]["name"] == "ce, raw"  # smoothed
    at.session_state["dynamics-tab"] = "Token groups"
    at.run()
    assert at.radio(key="dynamics-split").value == "paper"
    at.session_state["dynamics-tab"] = "Difficulty heat map"
    at.run()
    examples = at.selectbox(key="dynamics-example").options
    assert at.selectbox(key="dynamics-example").value == 0 and "example 9" not in examples  # no such example
    # a link with a tab and a token opens that tab at that token
    at = opened("views/dynamics.py", {"dynamics-tab": "Difficulty heat map", "dynamics-token": "3"})
    assert at.selectbox(key="dynamics-token").value == 3
    assert [json.loads(c.proto.spec)["data"][0]["type"] for c in at.get("plotly_chart")] == ["heatmap"]
    at = opened("views/explorer.py", {"explorer-r": "0.25", "explorer-c": "1.5", "explorer-source": "tiny"})
    assert at.slider(key="explorer-r").value == pytest.approx(0.25)
    assert at.slider(key="explorer-c").value == pytest.approx(1.5)
    assert at.radio(key="explorer-source").value == "tiny"
