"""The runs root (adakd.runs.rundir.runs_root, docs/contracts.md): --root, else $ADAKD_RUNS, else runs/
in the user data directory, whatever the working directory; the CLI, analysis and the app use it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from adakd.cli import main
from adakd.runs.rundir import runs_root
from analysis.runs import SAMPLE_RUNS_DIR, default_roots

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the XDG user data directory is Linux's")


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """No $ADAKD_RUNS, and the user data directory ($XDG_DATA_HOME) in a temporary folder."""
    monkeypatch.delenv("ADAKD_RUNS", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data"


def test_an_explicit_root_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "from-env"))
    assert runs_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert runs_root(str(tmp_path / "explicit")) == tmp_path / "explicit"  # a str, as argparse gives it


def test_the_environment_wins_over_the_default(tmp_path, monkeypatch, user_data):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "from-env"))
    assert runs_root() == tmp_path / "from-env"
    assert runs_root(None) == tmp_path / "from-env"
    monkeypatch.setenv("ADAKD_RUNS", "")  # empty counts as unset
    assert runs_root() == user_data / "adakd" / "runs"


@linux_only
def test_the_default_is_in_the_user_data_directory(tmp_path, monkeypatch, user_data):
    assert runs_root() == user_data / "adakd" / "runs"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runs_root() == tmp_path / "home" / ".local" / "share" / "adakd" / "runs"


def test_the_default_does_not_depend_on_the_working_directory(tmp_path, monkeypatch, user_data):
    seen = set()
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        seen.add(runs_root())
        assert not runs_root().is_relative_to(tmp_path / folder)
    assert len(seen) == 1


def test_relative_and_home_relative_roots_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert runs_root("mine") == tmp_path / "mine"
    monkeypatch.setenv("ADAKD_RUNS", "~/runs")
    assert runs_root() == tmp_path / "home" / "runs"


def test_the_cli_uses_the_same_precedence(tmp_path, monkeypatch, capsys, user_data):
    assert main(["list"]) == 0
    assert f"no runs under {user_data / 'adakd' / 'runs'}/" in capsys.readouterr().out
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "from-env"))
    assert main(["list"]) == 0
    assert f"no runs under {tmp_path / 'from-env'}/" in capsys.readouterr().out
    assert main(["list", "--root", str(tmp_path / "explicit")]) == 0
    assert f"no runs under {tmp_path / 'explicit'}/" in capsys.readouterr().out
    assert not (user_data / "adakd").exists()  # listing creates nothing


def test_analysis_and_the_app_search_the_runs_root_and_the_samples(tmp_path, monkeypatch):
    from app import state

    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path / "mine"))
    assert default_roots() == [tmp_path / "mine", SAMPLE_RUNS_DIR]
    assert state.runs_root() == tmp_path / "mine"
    assert state.roots() == (str(tmp_path / "mine"), str(SAMPLE_RUNS_DIR))
    assert SAMPLE_RUNS_DIR == Path(__file__).resolve().parents[2] / "sample_runs"
