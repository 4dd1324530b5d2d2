"""Benchmark: the loss from hidden states (adakd_loss_from_hidden) against materialised logits
and TRL's chunked divergence, one forward + backward into the student's hidden states and head.

Run:  .venv/bin/python benchmarks/bench_hidden_loss.py [--device cpu|cuda] [--repeats 3]
      [--tokens 8x256] [--hidden 576] [--vocab 49152] [--dtype float32|bfloat16]

Variants (reverse KL, τ = 1, every position valid — the worst case for AdaKD):

  logits_plain   z = h Wᵀ for both models ([N, V] each), adakd_loss(ratio=1, idts=False): plain KD
  logits_adakd   the same logits, adakd_loss(ratio=0.5, c=0.5): full AdaKD
  hidden_plain   adakd_loss_from_hidden(ratio=1, idts=False)
  hidden_adakd   adakd_loss_from_hidden(ratio=0.5, c=0.5)
  hidden_adakd-nocache   the same with cache_rows=0: both heads run again for every selected row
  trl            TRL's ChunkedDivergenceFunction (trl.DistillationTrainer's loss, beta = 1: reverse KL),
                 when trl is installed (``pip install trl==1.16.0 datasets``; not a project dependency)

Time: median wall time over ``--repeats``, variants interleaved round-robin after one warm-up
each, in one process. Memory: each variant in its own subprocess; CPU: peak RSS growth above the
inputs (hidden states and weights) through /proc/self/clear_refs (as bench_loss.py); CUDA:
``max_memory_allocated`` above the inputs. The size of one ``[N, V]`` float32 logits tensor is
printed beside it: materialised paths hold at least two.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

from adakd import adakd_loss  # noqa: E402
from adakd.method.hidden_loss import adakd_loss_from_hidden  # noqa: E402
from adakd.method.lm_head import LMHead  # noqa: E402

VARIANTS = ("logits_plain", "logits_adakd", "hidden_plain", "hidden_adakd", "hidden_adakd-nocache", "trl")
SETTINGS = {
    "plain": {"ratio": 1.0, "idts": False},
    "adakd": {"ratio": 0.5, "c": 0.5, "idts": True},
    "adakd-nocache": {"ratio": 0.5, "c": 0.5, "idts": True, "cache_rows": 0},  # hidden path only
}


def trl_available() -> bool:
    try:
        from trl.kernels.chunked_divergence import ChunkedDivergenceFunction  # noqa: F401
    except ImportError:
        return False
    return True


def make_inputs(args):
    b, t = (int(x) for x in args.tokens.split("x"))
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(0)
    h_s = torch.randn(b, t, args.hidden, generator=gen).to(args.device, dtype).requires_grad_()
    h_t = torch.randn(b, t, args.hidden, generator=gen).to(args.device, dtype)
    w_s = (torch.randn(args.vocab, args.hidden, generator=gen) / args.hidden**0.5).to(args.device, dtype)
    w_t = (torch.randn(args.vocab, args.hidden, generator=gen) / args.hidden**0.5).to(args.device, dtype)
    mask = torch.ones(b, t, dtype=torch.bool, device=args.device)
    return h_s, h_t, w_s.requires_grad_(), w_t, mask


def run_variant(variant, h_s, h_t, w_s, w_t, mask) -> float:
    """One forward + backward; returns the loss value."""
    h_s.grad = w_s.grad = None
    if variant == "trl":
        from trl.kernels.chunked_divergence import ChunkedDivergenceFunction

        per_token, _ = ChunkedDivergenceFunction.apply(
            h_s.reshape(-1, h_s.shape[-1]), w_s, None, h_t.reshape(-1, h_t.shape[-1]), w_t, None, 1.0
        )
        loss = per_token.sum() / mask.sum()
    else:
        path, kind = variant.split("_")
        s_head, t_head = LMHead(w_s), LMHead(w_t)
        if path == "logits":
            loss = adakd_loss(s_head(h_s), t_head(h_t), mask, divergence="rkl", **SETTINGS[kind]).loss
        else:
            loss = adakd_loss_from_hidden(h_s, h_t, mask, s_head, t_head, divergence="rkl", **SETTINGS[kind]).loss
    loss.backward()
    return float(loss.detach())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_memory(args, variant) -> int:
    """Peak memory (bytes) of one forward + backward above the inputs, after a warm-up run."""
    inputs = make_inputs(args)
    run_variant(variant, *inputs)
    for x in (inputs[0], inputs[2]):
        x.grad = None
    sync(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        run_variant(variant, *inputs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak RSS to the current RSS
    run_variant(variant, *inputs)
    return (_status_kib("VmHWM") - before) * 1024


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", default="8x256")
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)  # the subprocess's one job
    args = parser.parse_args(argv)
    if args.memory_of:
        print(json.dumps({"peak": peak_memory(args, args.memory_of)}))
        return
    variants = [v for v in VARIANTS if v != "trl" or trl_available()]
    inputs = make_inputs(args)
    losses = {v: run_variant(v, *inputs) for v in variants}  # warm-up, and the values to compare
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(args.repeats):
        for v in variants:
            sync(args.device)
            start = time.perf_counter()
            run_variant(v, *inputs)
            sync(args.device)
            times[v].append(time.perf_counter() - start)
    flags = [a for a in sys.argv[1:] if not a.startswith("--memory-of")]
    memory = {}
    for v in variants:
        done = subprocess.run(
            [sys.executable, __file__, *flags, "--memory-of", v], capture_output=True, text=True, check=True
        )
        memory[v] = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
    b, t = (int(x) for x in args.tokens.split("x"))
    logits_bytes = b * t * args.vocab * 4
    where = f"GPU {torch.cuda.get_device_name(args.device)}" if args.device.startswith("cuda") else f"CPU {cpu_name()}"
    print(f"{where}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, {args.dtype}")
    print(
        f"{args.tokens} tokens, H = {args.hidden}, V = {args.vocab:,}; "
        f"one [N, V] float32 = {logits_bytes / 2**30:.2f} GiB"
    )
    ratio = "x logits_plain"
    print(f"{'variant':21} {'loss':>10} {'median s':>9} {ratio:>15} {'peak GiB':>9} {ratio:>15}")
    base_t, base_m = statistics.median(times["logits_plain"]), memory["logits_plain"]
    for v in variants:
        med = statistics.median(times[v])
        print(
            f"{v:21} {losses[v]:10.6f} {med:9.3f} {med / base_t:15.2f} "
            f"{memory[v] / 2**30:9.2f} {memory[v] / base_m:15.2f}"
        )
    if "trl" in memory:
        print(
            "hidden_adakd / trl: time "
            f"{statistics.median(times['hidden_adakd']) / statistics.median(times['trl']):.2f}, "
            f"memory {memory['hidden_adakd'] / memory['trl']:.2f}"
        )


if __name__ == "__main__":
    main()
