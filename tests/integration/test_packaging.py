"""Packaging: the `adakd` console command, `adakd dashboard` (without starting a server) and the
wheel's contents (pyproject.toml's explicit package list)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from adakd.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_console_script_runs_from_any_folder(tmp_path):
    script = Path(sys.executable).parent / "adakd"
    assert script.is_file(), f"no {script}: install the project with `bash scripts/setup.sh` (pip install -e .)"
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: adakd")
    for command in ("train", "resume", "list", "sweep", "eval", "rebuild", "dashboard"):
        assert command in done.stdout


def test_python_m_adakd_is_the_same_command():
    done = subprocess.run(
        [sys.executable, "-m", "adakd", "dashboard", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: adakd dashboard") and "--print-command" in done.stdout


def _printed_command(capsys, argv: list[str]) -> list[str]:
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return shlex.split(out[0])


def test_dashboard_resolves_the_app_and_passes_streamlit_flags_on(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the app is found from the installed package, not the working directory
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "from-env"))
    line = _printed_command(capsys, ["dashboard", "--print-command", "--server.port", "8502", "--theme.base=dark"])
    assert line[0] == f"ADAKD_RUNS={tmp_path / 'from-env'}"
    assert line[1:5] == [sys.executable, "-m", "streamlit", "run"]
    script = Path(line[5])
    assert script == REPO / "app" / "main.py" and script.is_file()
    assert (script.parent / ".streamlit" / "config.toml").is_file()  # its settings travel with it
    assert line[6:] == ["--server.port", "8502", "--theme.base=dark"]


def test_dashboard_root_and_the_separator(tmp_path, capsys):
    line = _printed_command(
        capsys, ["dashboard", "--root", str(tmp_path / "explicit"), "--print-command", "--", "--server.port", "1"]
    )
    assert line[0] == f"ADAKD_RUNS={tmp_path / 'explicit'}"
    assert line[6:] == ["--server.port", "1"]


def test_other_commands_still_refuse_unknown_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["list", "--server.port", "8502"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --server.port 8502" in capsys.readouterr().err


def test_the_wheel_holds_the_three_packages_and_nothing_else(tmp_path):
    """Built from a copy of the tree (a build writes build/ and *.egg-info next to pyproject.toml),
    without build isolation: the pinned setuptools of the environment builds it, offline."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for name in ("adakd", "analysis", "app", "sample_runs", "tests", "scripts", "benchmarks"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        cwd=src,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (wheel,) = tmp_path.glob("adakd-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert {n.split("/")[0] for n in names} == {"adakd", "analysis", "app", dist_info}
    for needed in (
        "adakd/cli.py",
        "adakd/dashboard.py",
        "analysis/figures/dynamics.py",
        "analysis/report/report.py",
        "app/main.py",
        "app/views/runs.py",
        "app/.streamlit/config.toml",
    ):
        assert needed in names, needed
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "adakd = adakd.cli:main" in entry_points
