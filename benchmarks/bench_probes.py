"""Probe overhead at the default probe interval, as a share of training time (demo shapes).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_probes.py [--preset demo] [--repeats 5]
        [--threads 2] [--device cpu|cuda]

Target (issue 5): probes every ``probe_interval`` steps cost ≤ 10 % of training time.

Measured side by side in one process on the preset's real models and batches (built with the
trainer's own set-up, adakd.training.runsetup): one optimiser step exactly as the trainer takes it
(teacher forward, student forward, adakd_loss with the preset's LATF/IDTS settings, backward,
clipping, AdamW) against one probe (``probe_tokens`` on the fixed probe set +
``probe_gradient_groups`` on the gradient batch), both as called fresh (teacher forward inside
the probe) and with the frozen teacher's logits on the fixed batches computed once
(``teacher_valid_logits``, ``teacher_logits=``). Steps and probes alternate so all see the same
machine load; the medians give

    overhead % = probe / (probe_interval × step) × 100

Prints the machine (CPU model, cores, threads, GPU, torch version).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from adakd.data.tokenize import collate, next_token_targets  # noqa: E402
from adakd.method.loss import adakd_loss  # noqa: E402
from adakd.presets import resolve_preset  # noqa: E402
from adakd.training.probes import probe_gradient_groups, probe_tokens, teacher_valid_logits  # noqa: E402
from adakd.training.runsetup import build_models, build_optimizer, prepare_data  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    # the teacher's weights do not change the cost measured here: skip fine-tuning it first
    config = resolve_preset(args.preset, [f"device={args.device}", "teacher_sft_steps=0"])
    device = torch.device(args.device)
    teacher, student, tokenizer = build_models(config, device)
    data = prepare_data(config, tokenizer)
    optimizer = build_optimizer(config, student)
    batches = [
        collate(data.train[i * config.batch_size : (i + 1) * config.batch_size], data.pad_id)
        for i in range(args.repeats + 1)
    ]
    probe_batch = {k: v.to(device) for k, v in data.probe_batch.items()}
    grad_batch = {k: v.to(device) for k, v in data.gradient_batch.items()}
    ratio = 0.5  # a mid-run r: selection and IDTS both active

    def step(batch) -> float:
        batch = {k: v.to(device) for k, v in batch.items()}
        _sync(device)
        start = time.perf_counter()
        student.train()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        targets, mask = next_token_targets(batch["labels"])
        out = adakd_loss(
            s[:, :-1],
            t[:, :-1],
            mask,
            ratio=ratio,
            divergence=config.divergence,
            c=config.idts_c,
            base_temperature=config.base_temperature,
            idts=config.idts != "off",
            labels=targets,
            kd_ratio=config.kd_ratio,
        )
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), config.max_grad_norm)
        optimizer.step()
        _sync(device)
        return time.perf_counter() - start

    def probe(cached: dict | None) -> tuple[float, float]:
        cached = cached or {}
        _sync(device)
        start = time.perf_counter()
        probe_tokens(
            student,
            teacher,
            probe_batch,
            tokenizer,
            step=0,
            ratio=ratio,
            c=config.idts_c,
            base_temperature=config.base_temperature,
            teacher_logits=cached.get("probe"),
        )
        _sync(device)
        middle = time.perf_counter()
        probe_gradient_groups(
            student,
            teacher,
            grad_batch,
            step=0,
            ratio=ratio,
            divergence=config.divergence,
            divergence_params=config.divergence_params or None,
            teacher_logits=cached.get("gradient"),
        )
        _sync(device)
        return middle - start, time.perf_counter() - middle

    _sync(device)
    start = time.perf_counter()
    cache = {"probe": teacher_valid_logits(teacher, probe_batch), "gradient": teacher_valid_logits(teacher, grad_batch)}
    _sync(device)
    cache_s = time.perf_counter() - start
    step(batches[0])
    probe(None)
    probe(cache)  # warm-up all paths
    times: dict[str, list[float]] = {k: [] for k in ("step", "tokens", "grads", "tokens_cached", "grads_cached")}
    for batch in batches[1:]:
        times["step"].append(step(batch))
        for suffix, cached in (("", None), ("_cached", cache)):
            t, g = probe(cached)
            times["tokens" + suffix].append(t)
            times["grads" + suffix].append(g)

    med = {k: statistics.median(v) for k, v in times.items()}
    interval = config.probe_interval
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, "
        f"gpu {gpu}, torch {torch.__version__}, device {device}"
    )
    n_probe = int(next_token_targets(probe_batch["labels"])[1].sum())
    n_grad = int(next_token_targets(grad_batch["labels"])[1].sum())
    print(
        f"preset {args.preset}: batch {config.batch_size} x max_length {config.max_length}, "
        f"probe set {tuple(probe_batch['input_ids'].shape)} ({n_probe} tokens), gradient batch "
        f"{tuple(grad_batch['input_ids'].shape)} ({n_grad} tokens), V = {len(tokenizer)}, "
        f"probe_interval {interval}, {args.repeats} repeats; teacher cache built once in "
        f"{cache_s * 1000:.0f} ms ({sum(v.numel() for v in cache.values()) * 4 / 2**20:.0f} MiB)"
    )
    for key, label in (
        ("step", "train step"),
        ("tokens", "probe_tokens"),
        ("grads", "gradient probe"),
        ("tokens_cached", "probe_tokens (teacher cached)"),
        ("grads_cached", "gradient probe (teacher cached)"),
    ):
        print(f"{label:32s} median {med[key] * 1000:8.1f} ms  {[round(x * 1000) for x in times[key]]}")
    for suffix, label in (("", "fresh"), ("_cached", "teacher cached")):
        overhead = 100 * (med["tokens" + suffix] + med["grads" + suffix]) / (interval * med["step"])
        print(f"overhead at probe_interval={interval} ({label}): {overhead:.1f} % of training time (target <= 10 %)")


if __name__ == "__main__":
    main()
