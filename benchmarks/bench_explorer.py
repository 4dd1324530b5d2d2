"""Token-explorer latency with the real teacher and the default layer-subset student.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_explorer.py [--repeats 7] [--threads 2] [--attribution]

Target (issue 6): ≤ 2 s for a 64-token prompt on a 2-core CPU once the models are loaded.
Measured: ``explore_prompt`` with a reference reply (the scoring path: two forwards + all
per-token statistics), the median of ``--repeats`` calls after one warm-up, and separately its
parts (forwards, statistics) and the greedy-reply path (dominated by generation, bounded by
``max_new_tokens``), and re-scoring a kept greedy reply at new r and c (what the dashboard does
when only the sliders move). Prints the machine (CPU model, cores, threads, torch version, device).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from machine_info import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when a script runs)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from adakd.models.loading import build_student, load_teacher  # noqa: E402
from analysis import explorer  # noqa: E402

# A 64-token prompt once formatted with the chat template (checked below) and a reply.
INSTRUCTION = (
    "Explain in two short sentences why the sky looks blue during the day and red at sunset, for a curious child."
)
REFERENCE = (
    "Sunlight is made of many colours, and the tiny bits of air scatter blue light much more "
    "than red, so blue comes at us from every direction of the sky. At sunset the light "
    "travels through much more air, the blue is scattered away, and mostly red reaches us."
)


def _median_seconds(fn, repeats: int) -> tuple[float, list[float]]:
    fn()  # warm-up (first-call allocations, lazy imports)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (2 = the target machine)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--greedy-tokens", type=int, default=32)
    parser.add_argument(
        "--attribution",
        action="store_true",
        help="also time attribute_token (both methods, teacher) for one reply token",
    )
    parser.add_argument(
        "--random-weights",
        metavar="DIR",
        default=None,
        help="time a teacher with the architecture of DIR/config.json and random weights "
        "(same compute; for machines without the converted teacher). The greedy reply "
        "then runs to --greedy-tokens.",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"machine: {cpu_name()} | {os.cpu_count()} logical CPUs visible, "
        f"affinity {len(os.sched_getaffinity(0))} | torch {torch.__version__} threads {torch.get_num_threads()} "
        f"| device {args.device}{' ' + torch.cuda.get_device_name() if args.device.startswith('cuda') else ''} "
        f"| load average {os.getloadavg()[0]:.1f} (other processes slow the numbers down)"
    )
    t0 = time.perf_counter()
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM

        from adakd.models.loading import load_tokenizer

        torch.manual_seed(0)
        teacher = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.random_weights))
        teacher = teacher.to(args.device).eval().requires_grad_(False)
        tok = load_tokenizer(args.random_weights)
        print(f"teacher: RANDOM weights with the architecture of {args.random_weights}")
    else:
        teacher, tok = load_teacher(device=args.device)
    student = build_student(teacher).eval().requires_grad_(False)
    print(f"models loaded in {time.perf_counter() - t0:.1f} s (not timed below)")

    from adakd.data.instructions import Example
    from adakd.data.tokenize import encode_prompt

    n_prompt = len(encode_prompt(tok, Example(INSTRUCTION), 1 << 30))
    n_reply = len(tok(REFERENCE, add_special_tokens=False)["input_ids"]) + 1
    print(f"prompt {n_prompt} tokens (formatted), reference reply {n_reply} tokens")

    def score():
        return explorer.explore_prompt(teacher, student, tok, INSTRUCTION, REFERENCE)

    med, times = _median_seconds(score, args.repeats)
    print(
        f"explore_prompt (reference):   median {med:.3f} s over {args.repeats} "
        f"[{', '.join(f'{t:.2f}' for t in times)}]  target <= 2 s: {'PASS' if med <= 2 else 'FAIL'}"
    )

    result = score()
    ids = result.prompt_ids + result.response_ids
    n = len(result.response_ids)
    with torch.no_grad():
        fwd, _ = _median_seconds(
            lambda: (explorer.response_logits(teacher, ids, n), explorer.response_logits(student, ids, n)), args.repeats
        )
        zt = explorer.response_logits(teacher, ids, n)
        zs = explorer.response_logits(student, ids, n)
        labels = torch.tensor(result.response_ids, device=zt.device)
        stats, _ = _median_seconds(
            lambda: explorer.token_table(zs, zt, labels, ratio=0.5, c=0.5, base_temperature=1.0), args.repeats
        )
        topk, _ = _median_seconds(lambda: explorer.topk_table(zs, zt, labels, 5), args.repeats)
    print(f"  parts: two forwards {fwd:.3f} s | token statistics {stats:.3f} s | top-k {topk:.3f} s")

    greedy, _ = _median_seconds(
        lambda: explorer.explore_prompt(teacher, student, tok, INSTRUCTION, None, max_new_tokens=args.greedy_tokens),
        max(1, args.repeats // 3),
    )
    reply = explorer.explore_prompt(teacher, student, tok, INSTRUCTION, None, max_new_tokens=args.greedy_tokens)
    print(
        f"explore_prompt (teacher greedy, <= {args.greedy_tokens} new tokens, got {len(reply.tokens)}): "
        f"median {greedy:.3f} s"
    )
    # What the dashboard does when only r or c moves: the kept reply is scored again.
    rescore, _ = _median_seconds(
        lambda: explorer.explore_prompt(
            teacher, student, tok, INSTRUCTION, None, ratio=0.75, c=1.0, reply_ids=reply.response_ids
        ),
        args.repeats,
    )
    print(
        f"explore_prompt (same reply, new r and c): median {rescore:.3f} s "
        f"({greedy / rescore:.1f}x faster than regenerating)"
    )

    if args.attribution:
        from analysis.attribution import METHODS, attribute_token

        for method in METHODS:  # one call each: they take seconds to tens of seconds on a CPU
            start = time.perf_counter()
            res = attribute_token(teacher, tok, result.prompt_ids, result.response_ids, 5, method=method)
            print(
                f"attribute_token {method} ({len(res.scores)} prompt tokens, teacher): "
                f"{time.perf_counter() - start:.2f} s"
            )


if __name__ == "__main__":
    main()
