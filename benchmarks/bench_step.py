"""Step-time benchmark of the training step for a preset's shapes (default: demo).

    .venv/bin/python benchmarks/bench_step.py [--preset demo] [--iters 10] [--set key=value ...]

Three variants of one full optimiser step on the same batches, measured side by side
(round-robin within each iteration, so machine noise hits all three alike):

    (a) ce      teacher forward (no grad) + student forward/backward with cross-entropy only
    (b) kd      the same with plain token-level KD: masked mean of D(p_T, q_S) at τ = 1
                (adakd.method.divergences.divergence, no difficulty, selection or IDTS)
    (c) adakd   the same with adakd_loss (Hellinger difficulty, LATF selection at r = 0.5,
                IDTS on) on the materialised logits (`loss_input=logits`)
    (d) kd_h    plain KD from the last hidden states (adakd_loss_from_hidden, r = 1, IDTS off)
    (e) adakd_h (c) from the last hidden states: what `train` runs (`loss_input=hidden`)

Each step: zero_grad, forwards, loss, backward, grad clipping, AdamW step. Prints the
machine, medians and the ratios (b)/(a), (c)/(b) (targets: ≤ 1.10 and ≤ 1.05), (e)/(d) and
(e)/(b).
The teacher's forward is counted in all three, as it is in training.
Not a test: timings depend on the machine; run it by hand.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from adakd.data.tokenize import collate, next_token_targets  # noqa: E402
from adakd.method.divergences import divergence  # noqa: E402
from adakd.method.hidden_loss import adakd_loss_from_hidden  # noqa: E402
from adakd.method.lm_head import LastHidden, LMHead  # noqa: E402
from adakd.method.loss import adakd_loss  # noqa: E402
from adakd.presets import resolve_preset  # noqa: E402
from adakd.training.device import autocast, choose_device_and_dtype, dtype_name  # noqa: E402
from adakd.training.runsetup import DataOrder, build_models, build_optimizer, prepare_data  # noqa: E402


def machine(device: torch.device) -> str:
    cpu = cpu_name()
    parts = [
        platform.platform(),
        f"CPU {cpu} x{os.cpu_count()}",
        f"torch {torch.__version__}",
        f"threads {torch.get_num_threads()}",
    ]
    if device.type == "cuda":
        parts.append(f"GPU {torch.cuda.get_device_name(device)}")
    if hasattr(os, "getloadavg"):
        parts.append("load avg {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    return "; ".join(parts)


def random_default_pair(config, device):
    """Teacher = the default teacher's config with random weights; student = its layer subset."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from adakd.models.assets import default_teacher_dir
    from adakd.models.loading import build_student, load_tokenizer

    folder = default_teacher_dir()
    torch.manual_seed(0)
    teacher = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder)).to(device).eval()
    teacher.requires_grad_(False)
    student = build_student(teacher, spec=config.student, layers=config.student_layers, seed=0)
    return teacher, student.to(device).train(), load_tokenizer(folder)


def make_losses(config):
    def ce(s, t, mask, targets):
        logits = s[mask].float()
        return F.cross_entropy(logits, targets[mask])

    def kd(s, t, mask, targets):
        per_token = divergence(config.divergence, s[mask], t[mask], 1.0, **(config.divergence_params or {}))
        return per_token.mean()

    settings = dict(
        divergence=config.divergence,
        c=config.idts_c,
        base_temperature=config.base_temperature,
        indicator=config.indicator,
        divergence_params=config.divergence_params or None,
    )

    def ada(s, t, mask, targets):
        return adakd_loss(s, t, mask, ratio=0.5, idts=True, labels=targets, **settings).loss

    def from_hidden(ratio, idts):
        def loss(s, t, mask, targets, heads):
            return adakd_loss_from_hidden(s, t, mask, *heads, ratio=ratio, idts=idts, labels=targets, **settings).loss

        return loss

    # name -> (loss, whether it reads the last hidden states)
    return {
        "ce": (ce, False),
        "kd": (kd, False),
        "adakd": (ada, False),
        "kd_h": (from_hidden(1.0, False), True),
        "adakd_h": (from_hidden(0.5, True), True),
    }


def step(teacher, student, optimizer, batch, variant, device, dtype) -> float:
    loss_fn, hidden = variant
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    optimizer.zero_grad(set_to_none=True)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    head_dtype = dtype if dtype != torch.float32 else None
    with torch.no_grad(), autocast(device, dtype):
        t = LastHidden(teacher)(ids, attention) if hidden else teacher(input_ids=ids, attention_mask=attention).logits
    with autocast(device, dtype):
        s = LastHidden(student)(ids, attention) if hidden else student(input_ids=ids, attention_mask=attention).logits
    targets, mask = next_token_targets(batch["labels"])
    if hidden:
        heads = (LMHead.of(student, head_dtype), LMHead.of(teacher, head_dtype))
        loss = loss_fn(s[:, :-1], t[:, :-1], mask, targets, heads)
    else:
        loss = loss_fn(s[:, :-1], t[:, :-1], mask, targets)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
    optimizer.step()
    sync()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--iters", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--random-teacher",
        action="store_true",
        help="the default teacher's architecture with random weights (same shapes, same "
        "timings; for machines that have its tokenizer/config but not its weights)",
    )
    args = parser.parse_args(argv)

    # the teacher's weights do not change the step time: skip fine-tuning it first (--set may say otherwise)
    config = resolve_preset(args.preset, ["teacher_sft_steps=0", *args.set])
    device, dtype, reason = choose_device_and_dtype(config)
    if args.random_teacher:
        teacher, student, tokenizer = random_default_pair(config, device)
    else:
        teacher, student, tokenizer = build_models(config, device)
    data = prepare_data(config, tokenizer)
    order = DataOrder(len(data.train), config.seed)
    optimizer = build_optimizer(config, student)
    losses = make_losses(config)

    bs = config.batch_size
    batches = []
    for i in range(args.warmup + args.iters):
        b = collate([data.train[order.index(i * bs + j)] for j in range(bs)], data.pad_id)
        batches.append({k: v.to(device) for k, v in b.items()})
    times: dict[str, list[float]] = {name: [] for name in losses}
    for i, batch in enumerate(batches):
        names = list(losses)
        names = names[i % len(names) :] + names[: i % len(names)]  # rotate: no variant always runs first
        for name in names:
            seconds = step(teacher, student, optimizer, batch, losses[name], device, dtype)
            if i >= args.warmup:
                times[name].append(seconds)

    med = {name: statistics.median(v) for name, v in times.items()}
    shape = f"batch {bs} x up to {config.max_length} tokens, vocab {len(tokenizer)}"
    print(f"machine: {machine(device)}")
    if args.random_teacher:
        shape += "; random weights of the default teacher's architecture"
    print(f"preset {args.preset}: {shape}; device {device} ({dtype_name(dtype)}): {reason}")
    print(f"{args.iters} timed steps per variant after {args.warmup} warm-up, interleaved")
    print(f"{'variant':8} {'median s':>9} {'min s':>8} {'max s':>8} {'/ (a)':>7}")
    labels = {"ce": "(a) ce", "kd": "(b) kd", "adakd": "(c) adakd", "kd_h": "(d) kd_h", "adakd_h": "(e) adakd_h"}
    for name, label in labels.items():
        v = times[name]
        print(f"{label:9} {med[name]:9.4f} {min(v):8.4f} {max(v):8.4f} {med[name] / med['ce']:7.3f}")
    print(f"(b)/(a) = {med['kd'] / med['ce']:.3f}  (target <= 1.10)")
    print(f"(c)/(b) = {med['adakd'] / med['kd']:.3f}  (target <= 1.05)")
    print(f"(e)/(d) = {med['adakd_h'] / med['kd_h']:.3f}  (AdaKD / plain KD, both from hidden states)")
    print(f"(e)/(b) = {med['adakd_h'] / med['kd']:.3f}  (the trainer's default path / plain KD on logits)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
