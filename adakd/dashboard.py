"""`adakd dashboard`: the Streamlit app of the installed `app` package, as `streamlit run` starts it.

The command is the one a user would type, `python -m streamlit run <app/main.py> [ARGS]`, with
this interpreter, so the dashboard sees the same installed packages as the CLI. Streamlit reads
its settings (bound to 127.0.0.1, upload limit; SECURITY.md) from app/.streamlit/config.toml next
to the script, whatever the working directory; flags such as `--server.port 8502` override them.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import NoReturn


def app_script() -> Path:
    """Path of the installed dashboard's entry script, app/main.py (the package is not imported)."""
    spec = importlib.util.find_spec("app")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the dashboard package `app` is not installed: run `pip install -e .` in the repo")
    script = Path(spec.origin).parent / "main.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} is missing: reinstall the adakd package")
    return script


def streamlit_command(streamlit_args: list[str]) -> list[str]:
    """argv that serves the dashboard; `streamlit_args` (e.g. ["--server.port", "8502"]) go to Streamlit."""
    return [sys.executable, "-m", "streamlit", "run", str(app_script()), *streamlit_args]


def shell_line(command: list[str], runs_root: Path) -> str:
    """`command` as one shell line, with the runs root the pages will use."""
    return f"ADAKD_RUNS={shlex.quote(str(runs_root))} {shlex.join(command)}"


def serve(command: list[str], runs_root: Path) -> NoReturn:
    """Replace this process by the Streamlit server `command` (Ctrl-C then reaches Streamlit itself).

    `runs_root` reaches the app as $ADAKD_RUNS, so an explicit --root holds for the pages too.
    """
    os.execve(command[0], command, {**os.environ, "ADAKD_RUNS": str(runs_root)})
