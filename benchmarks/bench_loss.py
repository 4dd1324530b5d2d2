"""Benchmark: time and peak memory of the AdaKD loss against plain KD and a naive version.

Run:  .venv/bin/python benchmarks/bench_loss.py [--device cpu|cuda] [--repeats 5]
      [--tokens 8x256] [--vocab 49152] [--divergence rkl] [--valid-fraction 1.0]

Each variant is one forward + backward of a loss on random logits ``[B, T, V]``:

  plain      plain token-level KD with the same divergence, written as a user would:
             (τ²·D(z_S/τ, z_T/τ) * mask).sum() / mask.sum()  — the baseline
  adakd_r1   adakd_loss(ratio=1, idts=False): the same loss through AdaKD (adds the
             no-grad difficulty scoring, which is still computed for logging)
  adakd      adakd_loss(ratio=0.5, idts=True): full AdaKD
  naive      a naive full-vocabulary AdaKD: softmax of the whole [B, T, V] for everything,
             difficulty and τ with gradient, no gathering, masked sum over all tokens
  difficulty hellinger() alone on the valid rows (no grad, forward only): its cost

The ablation arms (docs/method.md §6; ``--variants arms`` runs plain and these), all at r = 0.5:

  topk       full AdaKD with the NMTKD top-k rank-violation indicator (k = 5)
  ind_fkl, ind_rkl, ind_jsd, ind_ce   full AdaKD with the other Table 3 indicators
  fixed_tau  IDTS off, τ = 0.8 (Table 5 fixed τ)
  inverse    inverse IDTS (Table 5)
  ctkd       IDTS off, CTKD's learnable τ through the gradient-reversal layer (backward into τ)
  logit_std  IDTS off, logits z-scored over V before τ (Table 5)
  sft        the SFT baseline: cross-entropy only, no teacher (kd_ratio = 0)

Time: median wall time over ``--repeats`` (variants interleaved round-robin, after one warm-up
each; CUDA synchronised). Memory: peak *extra* memory of one forward+backward above what the
inputs already hold. CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
CPU (Linux): tracemalloc does not see torch's allocations, so we use the kernel's peak
resident set: write 5 to /proc/self/clear_refs (resets VmHWM to the current RSS), run once,
peak = VmHWM − VmRSS before. Large tensors are mmap'd by glibc and returned on free, so RSS
follows the live tensors; small-allocation noise is a few MB. The default valid fraction
1.0 is the worst case for AdaKD (no padding to skip). On CUDA the script first checks that
the device result equals float64 on the CPU. ``--profile`` adds torch.profiler tables.

Measured (median of 30, H200, torch 2.11, 8×256 × 49,152, rkl; adakd / plain):
bf16 time 1.17×, memory 0.60×; float32 time 1.07×, memory 0.70×; jsd bf16 0.88× time.
The remaining bf16 gap is the per-token τ (a cast + divide pass per side) and launch latency.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

from adakd import adakd_loss, hellinger  # noqa: E402
from adakd.method.divergences import divergence, divergence_from_log_probs  # noqa: E402
from adakd.method.temperature import CTKDTemperature  # noqa: E402

VARIANTS = ("plain", "adakd_r1", "adakd", "naive", "difficulty")
# the ablation arms: adakd_loss keyword arguments on top of ratio = 0.5 (CTKD adds its τ)
ARMS = {
    "topk": {"idts": True, "indicator": "topk"},
    "ind_fkl": {"idts": True, "indicator": "fkl"},
    "ind_rkl": {"idts": True, "indicator": "rkl"},
    "ind_jsd": {"idts": True, "indicator": "jsd"},
    "ind_ce": {"idts": True, "indicator": "ce"},
    "fixed_tau": {"idts": False, "base_temperature": 0.8},
    "inverse": {"idts": True, "inverse": True},
    "ctkd": {"idts": False},
    "logit_std": {"idts": False, "standardize": True},
    "sft": {"kd_ratio": 0.0},
}
ARM_TARGET = 1.2  # each arm's time ≤ 1.2 × plain KD


# ----------------------------------------------------------------------------- the variants
def plain_kd(s, t, mask, name, base):
    """Baseline: plain token-level KD, masked mean over the valid tokens."""
    per_token = base**2 * divergence(name, s, t, base)
    return (per_token * mask).sum() / mask.sum().clamp_min(1)


def naive_adakd(s, t, mask, name, base, ratio=0.5, c=0.5):
    """Full-vocabulary AdaKD as one would first write it (gradient leaks through s and τ)."""
    sf, tf = s.float(), t.float()
    p, q = torch.softmax(tf, -1), torch.softmax(sf, -1)
    s_all = torch.sqrt(0.5 * ((p.sqrt() - q.sqrt()) ** 2).sum(-1) + 1e-12)  # [B, T]
    s_valid = s_all[mask]
    k = max(1, math.floor(ratio * s_valid.numel()))
    top = torch.topk(s_valid, k).indices
    sel = torch.zeros_like(s_valid)
    sel[top] = 1.0
    m = s_valid[top].median()
    tau_valid = base * torch.exp(-c * torch.tanh(torch.log((s_valid / m).clamp_min(1e-8))))
    tau = torch.ones_like(s_all).masked_scatter(mask, tau_valid)  # [B, T]
    sel_full = torch.zeros_like(s_all).masked_scatter(mask, sel)
    logq = torch.log_softmax(sf / tau.unsqueeze(-1), -1)
    logp = torch.log_softmax(tf / tau.unsqueeze(-1), -1)
    per_token = tau**2 * divergence_from_log_probs(name, logq, logp)
    return (per_token * sel_full).sum() / k


def run_arm(variant, s, t, mask, labels, name):
    """One forward + backward of an ablation arm (``ARMS``) at r = 0.5."""
    kwargs = dict(ARMS[variant])
    ctkd = CTKDTemperature(1.0).to(s.device) if variant == "ctkd" else None
    teacher = None if variant == "sft" else t
    loss = adakd_loss(
        s,
        teacher,
        mask,
        ratio=0.5,
        divergence=name,
        labels=labels,
        learned_temperature=ctkd(0.5) if ctkd is not None else None,
        **kwargs,
    ).loss
    loss.backward()
    s.grad = None
    return loss.detach()


def run_variant(variant, s, t, mask, name, base, labels=None):
    if variant in ARMS:
        return run_arm(variant, s, t, mask, labels, name)
    if variant == "difficulty":
        # as adakd_loss scores: the valid rows (a view when every position is valid)
        flat = mask.all()
        rows_s = s.detach().flatten(0, -2) if flat else s.detach()[mask]
        rows_t = t.flatten(0, -2) if flat else t[mask]
        return hellinger(rows_s, rows_t).sum()
    if variant == "plain":
        loss = plain_kd(s, t, mask, name, base)
    elif variant == "adakd_r1":
        loss = adakd_loss(s, t, mask, ratio=1.0, idts=False, divergence=name, base_temperature=base).loss
    elif variant == "adakd":
        loss = adakd_loss(s, t, mask, ratio=0.5, idts=True, divergence=name, base_temperature=base).loss
    else:
        loss = naive_adakd(s, t, mask, name, base)
    loss.backward()
    s.grad = None
    return loss.detach()


# ----------------------------------------------------------------------------- set-up
def make_inputs(args):
    b, t_len = (int(x) for x in args.tokens.lower().split("x"))
    gen = torch.Generator().manual_seed(0)
    dtype = getattr(torch, args.dtype)
    s = (2.0 * torch.randn(b, t_len, args.vocab, generator=gen)).to(args.device, dtype).requires_grad_()
    t = (2.0 * torch.randn(b, t_len, args.vocab, generator=gen)).to(args.device, dtype)
    mask = torch.zeros(b, t_len, dtype=torch.bool)
    mask[:, : max(1, round(args.valid_fraction * t_len))] = True
    labels = torch.randint(0, args.vocab, (b, t_len), generator=gen)
    return s, t, mask.to(args.device), labels.to(args.device)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_variants(args, variants):
    s, t, mask, labels = make_inputs(args)
    times = {v: [] for v in variants}
    for v in variants:  # warm-up
        run_variant(v, s, t, mask, args.divergence, args.base_temperature, labels)
    sync(args.device)
    for _ in range(args.repeats):
        for v in variants:
            sync(args.device)
            start = time.perf_counter()
            run_variant(v, s, t, mask, args.divergence, args.base_temperature, labels)
            sync(args.device)
            times[v].append(time.perf_counter() - start)
    return {v: statistics.median(x) for v, x in times.items()}


def peak_memory_cuda(args, variant):
    s, t, mask, labels = make_inputs(args)
    run_variant(variant, s, t, mask, args.divergence, args.base_temperature, labels)  # warm-up
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run_variant(variant, s, t, mask, args.divergence, args.base_temperature, labels)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory_cpu(args, variant):
    """Peak RSS growth (bytes): reset the kernel's high-water mark (VmHWM) through
    /proc/self/clear_refs, run once, read VmHWM − VmRSS before. Linux only."""
    s, t, mask, labels = make_inputs(args)
    run_variant(variant, s, t, mask, args.divergence, args.base_temperature, labels)  # warm-up
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # 5 = reset the peak RSS to the current RSS
    run_variant(variant, s, t, mask, args.divergence, args.base_temperature, labels)
    return (_status_kib("VmHWM") - before) * 1024


def check_against_cpu(args):
    """On an accelerator: the device result must match float64 on the CPU (same inputs)."""
    gen = torch.Generator().manual_seed(1)
    s = 3 * torch.randn(4, 64, 1000, generator=gen, dtype=torch.float64)
    t = 3 * torch.randn(4, 64, 1000, generator=gen, dtype=torch.float64)
    mask = torch.rand(4, 64, generator=gen) < 0.8
    labels = torch.randint(0, 1000, (4, 64), generator=gen)
    results = []
    for device, dtype in (("cpu", torch.float64), (args.device, torch.float32)):
        x = s.to(device, dtype, copy=True).requires_grad_()
        out = adakd_loss(
            x, t.to(device, dtype), mask.to(device), ratio=0.5, divergence=args.divergence, labels=labels.to(device)
        )
        out.loss.backward()
        results.append((out, x.grad.double().cpu()))
    (ref, g_ref), (got, g_got) = results
    assert torch.equal(ref.selected, got.selected.cpu()), "selection differs from the CPU"
    assert abs(got.loss.item() - ref.loss.item()) <= 1e-5 * abs(ref.loss.item()), (got.loss, ref.loss)
    assert abs(got.ce.item() - ref.ce.item()) <= 1e-5 * abs(ref.ce.item()), (got.ce, ref.ce)
    assert torch.allclose(got.temperature.double().cpu(), ref.temperature, rtol=1e-5, equal_nan=True)
    assert torch.allclose(g_got, g_ref, rtol=1e-4, atol=1e-8), (g_got - g_ref).abs().max()
    return f"{args.device} float32 matches CPU float64 (loss {got.loss.item():.6f} vs {ref.loss.item():.6f})"


def profile(args, variants, rows=12):
    """Print the top operators by device (or CPU) time of 3 forward+backward per variant."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    s, t, mask, labels = make_inputs(args)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device.startswith("cuda") else [])
    for v in variants:
        run_variant(v, s, t, mask, args.divergence, args.base_temperature, labels)
        sync(args.device)
        with torch_profile(activities=activities) as prof:
            for _ in range(3):
                run_variant(v, s, t, mask, args.divergence, args.base_temperature, labels)
            sync(args.device)
        key = "self_cuda_time_total" if args.device.startswith("cuda") else "self_cpu_time_total"
        print(f"--- profile: {v} (3 iterations)")
        try:
            print(prof.key_averages().table(sort_by=key, row_limit=rows))
        except (AttributeError, KeyError):
            print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=rows))


def machine(device):
    if device.startswith("cuda"):
        return f"GPU {torch.cuda.get_device_name(device)}"
    name = cpu_name()
    return f"CPU {name}, {torch.get_num_threads()} torch threads"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", default="8x256", help="B x T, e.g. 8x256")
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--divergence", default="rkl")
    parser.add_argument("--base-temperature", type=float, default=1.0)
    parser.add_argument("--dtype", default=None, help="logits dtype (default: float32 on CPU, bfloat16 on CUDA)")
    parser.add_argument("--valid-fraction", type=float, default=1.0, help="share of positions in the mask")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated; 'arms' = plain and every ablation arm"
    )
    parser.add_argument("--profile", action="store_true", help="also print torch.profiler tables")
    args = parser.parse_args(argv)
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    variants = [v for v in args.variants.split(",") if v]
    if variants == ["arms"]:
        variants = ["plain", "adakd", *ARMS]
    unknown = [v for v in variants if v not in VARIANTS and v not in ARMS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; valid: {', '.join((*VARIANTS, *ARMS))}, arms")
    if args.device != "cpu":
        print("check:", check_against_cpu(args))

    times = time_variants(args, variants)
    if args.device.startswith("cuda"):
        memory = {v: peak_memory_cuda(args, v) for v in variants}
        how = "torch.cuda.max_memory_allocated above the inputs"
    else:
        memory = {v: peak_memory_cpu(args, v) for v in variants}
        how = "peak RSS growth (VmHWM after a clear_refs reset − VmRSS before)"

    print(f"machine: {machine(args.device)}; torch {torch.__version__}")
    print(
        f"shape {args.tokens} x V={args.vocab}, {args.dtype}, divergence {args.divergence}, "
        f"valid fraction {args.valid_fraction}, repeats {args.repeats}; memory: {how}"
    )
    print(f"{'variant':<12}{'median s':>10}{'× plain':>9}{'peak MiB':>11}{'× plain':>9}")
    for v in variants:
        rt = times[v] / times["plain"] if "plain" in times else float("nan")
        rm = memory[v] / memory["plain"] if memory.get("plain") else float("nan")
        print(f"{v:<12}{times[v]:>10.4f}{rt:>9.2f}{memory[v] / 2**20:>11.1f}{rm:>9.2f}")
    if args.profile:
        profile(args, variants)
    if "plain" in times and "adakd" in times:
        ok_t = times["adakd"] <= 1.10 * times["plain"]
        ok_m = memory["adakd"] <= 1.5 * memory["plain"]
        print(
            f"targets: adakd ≤ 1.10× plain time: {'met' if ok_t else 'MISSED'}; "
            f"≤ 1.5× plain peak memory: {'met' if ok_m else 'MISSED'}"
        )
    for v in (v for v in variants if v in ARMS and "plain" in times):
        ratio = times[v] / times["plain"]
        print(f"target: {v} ≤ {ARM_TARGET}× plain time: {'met' if ratio <= ARM_TARGET else 'MISSED'} ({ratio:.2f}×)")


if __name__ == "__main__":
    main()
