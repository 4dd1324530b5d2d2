"""Security: what SECURITY.md promises, checked.

- The dashboard binds to 127.0.0.1 by default (app/.streamlit/config.toml, read next to the
  script), and a real `streamlit run <repo>/app/main.py` started without address flags, from
  another working directory, listens on loopback only.
- Uploads are size-limited in the config (the app has no upload widget; typed text is bounded).
- trust_remote_code is off by default everywhere and the dashboard warns when a config turns it on.
- Only safetensors weights are loaded; nothing is unpickled from a run directory or a model folder:
  a booby-trapped pickle (whose loading would create a folder) is refused and never runs.
- Run names are single, safe folder names (property test).
- A source scan of adakd/, analysis/ and app/ for torch.load without weights_only=True,
  pickle-family imports, eval/exec/compile, yaml.load, shell=True, from_pretrained of weights
  without use_safetensors=True, and a literal trust_remote_code=True.
"""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.browser_harness import wait_until_healthy

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("adakd", "analysis", "app")


# ---------------------------------------------------------------- binding and uploads
def test_streamlit_config_binds_loopback_and_limits_uploads():
    config = tomllib.loads((REPO / "app" / ".streamlit" / "config.toml").read_text())
    server = config["server"]
    assert server["address"] == "127.0.0.1"
    assert 1 <= server["maxUploadSize"] <= 50  # MB; Streamlit's default is 200
    assert server.get("enableXsrfProtection", True) is True  # never switched off
    assert server.get("enableCORS", True) is True
    assert config["browser"]["gatherUsageStats"] is False


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of sockets listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) == port and fields[3] == "0A":  # 0A = LISTEN
                found.append(address)
    return found


def test_the_dashboard_server_listens_on_loopback_only(tmp_path):
    if not Path("/proc/net/tcp").exists():
        pytest.skip("needs Linux /proc/net/tcp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ADAKD_RUNS": str(tmp_path / "runs"), "HF_HUB_OFFLINE": "1"}
    log = open(tmp_path / "streamlit.log", "wb")
    # no --server.address, and a working directory without a .streamlit/: app/.streamlit/config.toml decides
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(REPO / "app" / "main.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", proc, tmp_path / "streamlit.log", timeout_s=90)
        addresses = _listening(port)
        assert addresses, "no listening socket found for the server"
        # 0100007F = 127.0.0.1 (little-endian hex); anything else (00000000 = 0.0.0.0, :: in tcp6) is exposed
        assert set(addresses) == {"0100007F"}, addresses
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# ---------------------------------------------------------------- trust_remote_code
def test_trust_remote_code_is_off_by_default():
    import inspect

    from adakd.config import RunConfig
    from adakd.models import loading as models
    from adakd.presets import PRESETS

    assert RunConfig().trust_remote_code is False
    assert not [name for name, preset in PRESETS.items() if preset.get("trust_remote_code")]
    for fn in (models.load_teacher, models.load_tokenizer, models.build_student, models.load_model_pair):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False, fn.__name__


def test_dashboard_warns_when_trust_remote_code_is_on(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from analysis import runs as analysis_runs
    from tests.rundir_factory import make_run

    root = tmp_path / "runs"
    trusting = make_run(
        root, "remote-code", config={"trust_remote_code": True}, steps=4, meta={"started_at": "2026-01-02T00:00:00Z"}
    )
    plain = make_run(root, "plain", steps=4, meta={"started_at": "2026-01-01T00:00:00Z"})
    monkeypatch.setenv("ADAKD_RUNS", str(root))
    monkeypatch.setattr(analysis_runs, "SAMPLE_RUNS_DIR", tmp_path / "no-samples")
    main_py = str(REPO / "app" / "main.py")

    def warnings(selected: Path, page: str | None = None) -> str:
        at = AppTest.from_file(main_py, default_timeout=60)
        at.session_state["selected_runs"] = [str(selected)]
        at.run()
        if page:
            at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
        return " ".join(w.value for w in at.warning)

    assert "trust_remote_code is on" in warnings(trusting)
    assert "trust_remote_code is on" not in warnings(plain)
    assert "trust_remote_code is on" in warnings(trusting, "views/explorer.py")  # before any model loads

    at = AppTest.from_file(main_py, default_timeout=60)
    at.run()
    at.switch_page("views/train.py").run()
    at.selectbox(key="train-preset").set_value("smoke").run()
    assert not [w for w in at.warning if "trust_remote_code" in w.value]
    at.text_area(key="train-smoke-extra").input("trust_remote_code=true").run()
    assert any("trust_remote_code is on" in w.value for w in at.warning)
    assert "trust_remote_code=true" in at.code[0].value  # and the command shows it


# ---------------------------------------------------------------- nothing is unpickled
class _Trap:
    """Unpickling this creates the folder `path` (os.mkdir): proof that a pickle was executed."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_the_trap_works_when_pickle_is_trusted(tmp_path):
    """Control: the same payload does run under a plain torch.load, so the tests below can fail."""
    marker = tmp_path / "pwned"
    torch.save({"state": _Trap(marker)}, tmp_path / "trap.pt")
    torch.load(tmp_path / "trap.pt", weights_only=False)
    assert marker.is_dir()


def test_a_booby_trapped_checkpoint_is_refused(tmp_path):
    from adakd.models.loading import tiny_random_llama
    from adakd.training.checkpoint import load_checkpoint, save_checkpoint

    model = tiny_random_llama(64, hidden=16)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    path = save_checkpoint(tmp_path / "checkpoints", 3, model, optimizer, scheduler, {"note": "x"})
    marker = tmp_path / "pwned"
    for name in ("optimizer.pt", "scheduler.pt"):
        original = (path / name).read_bytes()
        torch.save({"state": _Trap(marker)}, path / name)
        with pytest.raises(Exception, match="(?i)weights.only|unpickl|global"):
            load_checkpoint(path, model, optimizer, scheduler)
        assert not marker.exists(), f"{name} was unpickled"
        (path / name).write_bytes(original)
    torch.save({"state": _Trap(marker)}, path / "model.safetensors")  # a pickle posing as safetensors
    with pytest.raises(Exception):  # noqa: B017 - any refusal will do, as long as nothing is unpickled
        load_checkpoint(path, model)
    assert not marker.exists()


def test_a_model_folder_with_pickle_weights_is_refused(tmp_path):
    from adakd.models.loading import ModelError, load_teacher, tiny_random_llama

    tiny_random_llama(64, hidden=16).config.save_pretrained(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"model.embed_tokens.weight": _Trap(marker)}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match="no .safetensors weights"):
        load_teacher(str(tmp_path))
    assert not marker.exists()


# ---------------------------------------------------------------- run names
@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_an_accepted_run_name_is_one_folder_inside_the_root(name):
    from adakd.runs.rundir import check_run_name

    root = Path("/srv/runs")
    try:
        check_run_name(name)
    except ValueError as err:
        assert str(err)  # a reason is given
        return
    assert os.sep not in name and "/" not in name and "\\" not in name and "\x00" not in name
    assert name not in (".", "..") and not name.startswith(".")
    assert os.path.normpath(root / name) == str(root / name)
    assert Path(os.path.normpath(root / name)).parent == root


@pytest.mark.parametrize(
    "name", ["..", "../x", "a/../../b", "/etc", "a\\b", ".hidden", "x\x00y", "caf\u00e9", "tab\tname", "new\nline", " "]
)
def test_traversal_and_odd_run_names_are_refused(name, tmp_path):
    from adakd.config import RunConfig
    from adakd.presets import PRESETS
    from adakd.runs.rundir import check_run_name
    from app.train_form import build_request

    with pytest.raises(ValueError):
        check_run_name(name)
    with pytest.raises(ValueError):  # the dashboard's Train form uses the same check
        build_request("single", "smoke", {}, "", {}, name, RunConfig.from_dict(PRESETS["smoke"]), tmp_path)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the source scan
def _sources(root: Path, packages):
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _name(node: ast.AST) -> str:
    """Dotted name of a call target: torch.load, yaml.load, eval, ..."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_name(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def scan(root: Path = REPO, packages=PACKAGES) -> list[str]:
    """One line per forbidden pattern found in the packages' Python files."""
    findings = []
    for path, tree in _sources(root, packages):
        where = path.relative_to(root)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                findings += [
                    f"{where}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in UNSAFE_MODULES
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNSAFE_MODULES:
                findings.append(f"{where}:{node.lineno} imports from {node.module}")
            if not isinstance(node, ast.Call):
                continue
            name = _name(node.func)
            line = f"{where}:{node.lineno} {name}("
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                findings.append(line + "...)")
            if name.endswith("torch.load") or name == "load" and isinstance(node.func, ast.Name):
                if not _is_true(_keyword(node, "weights_only")):
                    findings.append(line + "...) without weights_only=True")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                findings.append(line + "...): use yaml.safe_load")
            if name.endswith(("read_pickle", "to_pickle")):
                findings.append(line + "...)")
            if name.endswith("np.load") or name.endswith("numpy.load"):
                if _is_true(_keyword(node, "allow_pickle")):
                    findings.append(line + "allow_pickle=True)")
            if _is_true(_keyword(node, "shell")):
                findings.append(line + "shell=True)")
            if _is_true(_keyword(node, "trust_remote_code")):
                findings.append(line + "trust_remote_code=True): must come from the config, default off")
            if name.endswith(".from_pretrained") and "Model" in name and "Config" not in name:
                if not (_is_true(_keyword(node, "use_safetensors")) or _keyword(node, "gguf_file") is not None):
                    findings.append(line + "...) without use_safetensors=True")
            if name.endswith("file_uploader") and _keyword(node, "type") is None:
                findings.append(line + "...) accepts any file type")
    return findings


def test_source_scan_finds_no_unsafe_loading_or_code_execution():
    findings = scan()
    assert findings == [], "\n".join(findings)


def test_the_scan_would_catch_each_pattern(tmp_path):
    """Control: a file with every forbidden pattern is flagged once per pattern."""
    bad = tmp_path / "bad" / "x.py"
    bad.parent.mkdir()
    bad.write_text(
        "import pickle\nimport torch, yaml, subprocess\nfrom transformers import AutoModelForCausalLM\n"
        "torch.load('a')\ntorch.load('a', weights_only=False)\neval('1')\nexec('x=1')\n"
        "yaml.load('a')\nsubprocess.run('ls', shell=True)\n"
        "AutoModelForCausalLM.from_pretrained('x')\nAutoModelForCausalLM.from_pretrained('x', trust_remote_code=True, "
        "use_safetensors=True)\n"
    )
    found = scan(tmp_path, ("bad",))
    assert [f.split(" ", 1)[0] for f in found] == [f"bad/x.py:{n}" for n in (1, 4, 5, 6, 7, 8, 9, 10, 11)], found
    assert "trust_remote_code=True" in found[-1] and "use_safetensors" in found[-2]
