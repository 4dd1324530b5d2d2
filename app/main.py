"""AdaKD dashboard: `adakd dashboard`, `streamlit run app/main.py` or `make dashboard`.

The entry script only sets the page up and routes: each page is a short script in app/views/.
Runs are read from the runs root (adakd.runs.rundir.runs_root: $ADAKD_RUNS, else runs/ in the user
data directory) and from the repository's sample_runs/. `app` and `adakd` are imported as the
installed packages (`pip install -e .`, done by scripts/setup.sh).
"""

import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub from the dashboard

import streamlit as st  # noqa: E402

from app import state, url_state  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

st.set_page_config(page_title="AdaKD dashboard", page_icon=":material/school:", layout="wide")

PAGES = {
    "Runs": [
        st.Page("views/runs.py", title="Runs", icon=":material/folder_open:", default=True),
        st.Page("views/train.py", title="Train", icon=":material/play_circle:"),
    ],
    "One run": [
        st.Page("views/dynamics.py", title="Token dynamics", icon=":material/grid_on:"),
        st.Page("views/gradients.py", title="Gradients", icon=":material/call_split:"),
        st.Page("views/temperature.py", title="Temperature & entropy", icon=":material/thermostat:"),
    ],
    "Several runs": [
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:"),
        st.Page("views/explorer.py", title="Token explorer", icon=":material/text_select_start:"),
        st.Page("views/export.py", title="Report bundle", icon=":material/ios_share:"),
    ],
}

page = st.navigation(PAGES)
# The runs selected on the Runs page, in the URL too: a reload or a shared link keeps them.
url_state.keep(state.SELECTED, [], url_state.RUNS)
with st.sidebar:
    st.caption(f"Runs folder: `{state.runs_root()}`")
    selected = st.session_state.get(state.SELECTED) or []
    if selected:
        names = ", ".join(Path(p).name for p in selected[:3]) + (" …" if len(selected) > 3 else "")
        st.caption(f"Selected: {names}")
page.run()
