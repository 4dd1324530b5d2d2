"""Shared fixtures for the whole suite.

- ``teacher_dir``   (session) the real converted SmolLM2-135M-Instruct folder, via
                    ``default_teacher_dir()``: converted once (~20 s) into the normal cache and
                    reused by every later test file and run.
- ``real_teacher``  (session) ``(model, tokenizer)`` of that teacher on CPU, float32, eval, frozen.
                    Do not modify it; build a student from it instead.
- ``tokenizer``     (session) the real SmolLM2 tokenizer (vocabulary 49,152, ChatML template,
                    eos/pad ``<|im_end|>`` = 2, bos ``<|im_start|>`` = 1).
- ``tiny_pair``     (function) ``ModelPair`` of a tiny random Llama teacher (2 x 64, eval, frozen)
                    and student (2 x 32, train mode) sharing the real tokenizer's 49,152 tokens;
                    a forward on a few short sequences takes milliseconds. Fresh per test.
- ``isolated_cache`` (function) ``$ADAKD_CACHE`` set to a fresh folder holding only a link to the
                    converted teacher: evaluation records and rebuilt students written by the test
                    stay there (and none from earlier runs is found).
- ``tmp_run_dir``   (function) a path for a run directory that does NOT exist yet (its parent
                    does), so code under test creates it as a real run would.
- ``$ADAKD_RUNS``   (every test, autouse) a fresh empty folder, so nothing a test runs (in process
                    or as a subprocess, which inherits the environment) writes into the user's real
                    runs root. Set before the test modules are imported too, for the environments
                    they build at import time. A test that needs a particular root sets its own.

Markers: ``cuda`` tests are skipped without a CUDA GPU, ``browser`` tests without chromium.
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub/transformers, which read these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import shutil  # noqa: E402
import tempfile  # noqa: E402

# Never the user data directory: the default runs root of this session (see the docstring).
_SESSION_RUNS = tempfile.mkdtemp(prefix="adakd-test-runs-")
os.environ["ADAKD_RUNS"] = _SESSION_RUNS

import pytest  # noqa: E402
import torch  # noqa: E402

# At most two intra-op threads per test process, fewer when pytest-xdist runs several workers
# (the README's test command runs one per core): oversubscribed cores make torch slower, not faster.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 2) // _WORKERS)))


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    no_browser = pytest.mark.skip(
        reason="needs Debian's chromium (run scripts/setup.sh as root, or apt-get install chromium)"
    )
    has_cuda = torch.cuda.is_available()
    has_chromium = any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome"))
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(no_cuda)
        if "browser" in item.keywords and not has_chromium:
            item.add_marker(no_browser)


def pytest_unconfigure(config):
    shutil.rmtree(_SESSION_RUNS, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_runs_root(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("ADAKD_RUNS", str(tmp_path_factory.mktemp("runs-root")))


@pytest.fixture(scope="session")
def teacher_dir():
    from adakd.models.assets import default_teacher_dir

    return default_teacher_dir()


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch, teacher_dir):
    cache = tmp_path / "adakd-cache"
    cache.mkdir()
    (cache / teacher_dir.name).symlink_to(teacher_dir, target_is_directory=True)
    monkeypatch.setenv("ADAKD_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def real_teacher(teacher_dir):
    from adakd.models.loading import load_teacher

    return load_teacher("smollm2-135m-instruct", device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def tokenizer(teacher_dir):
    from adakd.models.loading import load_tokenizer

    return load_tokenizer(teacher_dir)


@pytest.fixture
def tiny_pair(tokenizer):
    from adakd.models.loading import ModelPair, tiny_random_llama

    ids = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    vocab = len(tokenizer)
    teacher = tiny_random_llama(vocab, layers=2, hidden=64, seed=1, **ids).eval().requires_grad_(False)
    student = tiny_random_llama(vocab, layers=2, hidden=32, seed=2, **ids).train()
    return ModelPair(teacher, student, tokenizer)


@pytest.fixture
def tmp_run_dir(tmp_path):
    return tmp_path / "runs" / "test-run"
