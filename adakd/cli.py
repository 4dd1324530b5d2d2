"""Command line: thin glue over adakd.training.trainer, adakd.training.sweep and adakd.evaluation.evaluate.

`adakd ...` (the installed console script) and `python -m adakd ...` are the same command.

    python -m adakd train  --preset demo [--set key=value ...] [--run-dir DIR | --name NAME]
    python -m adakd resume RUN                       (a run folder, or a name under the runs root)
    python -m adakd list   [--root DIR]              runs with state, steps, final loss, ROUGE-L
    python -m adakd sweep  --preset demo --grid idts_c=0.1,0.5 [--grid ...] [--set ...] [--name N]
    python -m adakd eval   RUN [--data FILE ...] [--examples N] [--greedy] [--seeds N] [--json]
    python -m adakd rebuild RUN     the trained student of a run that kept no checkpoint, into the cache
    python -m adakd dashboard [--root DIR] [--print-command] [STREAMLIT ARGS ...]   (adakd/dashboard.py)
    python -m adakd settings [NAME ...] [--markdown]   the config fields: type, default, allowed values, meaning

Data-parallel: `torchrun --nproc_per_node 2 -m adakd train --preset smoke --name ddp` (gloo on
CPU, nccl on CUDA); only rank 0 writes the run directory.
The runs root is --root, else $ADAKD_RUNS, else runs/ in the user data directory
(adakd.runs.rundir.runs_root). Bad input prints one line saying what to fix and
exits with code 2 before anything is written (so does a run that another process is writing:
train, resume and eval hold the run's lock, adakd/runs/runlock.py); a run that fails later exits
with 1. Every failure is one line naming the file and what to do; --debug adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from adakd.runs.failures import describe
from adakd.runs.metric_gaps import run_step_problems
from adakd.runs.rundir import RunDir, check_run_name, latest_step, runs_root
from adakd.runs.runlock import RunBusy, new_run_lock, run_lock

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("adakd")
ROOT_HELP = "runs root (default: $ADAKD_RUNS, else runs/ in the user data directory)"


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


_DEBUG = False  # --debug: failures raise with their traceback instead of one line


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _setup_logging(quiet: bool) -> None:
    level = logging.WARNING if quiet else logging.INFO
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if _rank() != 0:
        fmt = f"[rank {_rank()}] " + fmt
    logging.basicConfig(level=level, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr)


def _resolve_run(spec: str, root: Path) -> Path:
    """A run folder path, or a run name under the runs root `root`."""
    path = Path(spec)
    if path.is_dir():
        return path
    if path.exists():
        raise UsageError(f"{spec} is a file, not a run folder: give the run's folder or its name")
    try:
        candidate = root / check_run_name(spec)
    except ValueError:
        raise UsageError(
            f"no run folder {spec!r}, and as a run name it contains a path separator or "
            "'..': give an existing run folder or a plain run name"
        ) from None
    if candidate.is_dir():
        return candidate
    raise UsageError(f"no run folder {spec!r} (looked in . and {root}/)")


class _Progress:
    """tqdm bar fed by the trainer's on_step callback (rank 0, a TTY, not --quiet)."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty() and _rank() == 0
        self.bar: tqdm | None = None  # created at the first step

    def __call__(self, record: dict) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(
                total=record.get("total_steps"), initial=record["step"] - 1, unit="step", dynamic_ncols=True
            )
        self.bar.update(record["step"] - self.bar.n)
        tau = record.get("mean_tau")
        self.bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            r=f"{record['ratio']:.3f}",
            tau="-" if tau is None else f"{tau:.3f}",
            tok_s=f"{record.get('tokens_per_s') or 0:.0f}",
            refresh=False,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _finish(path: Path) -> int:
    status = RunDir(path).read_status() or {}
    if _rank() == 0:
        state = status.get("state")
        if state == "stopped":
            print(f"stopped at step {status.get('step')}: continue with  python -m adakd resume {path}")
        else:
            print(f"{state}: {path}")
    return 0


def _quiet_transformers() -> None:
    """No "Loading weights" bars from transformers: the CLI has its own progress bar."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _run_training(call, quiet: bool, run_dir: Path) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    _quiet_transformers()
    progress = _Progress(quiet)
    try:
        with logging_redirect_tqdm():
            path = call(progress)
    except Exception as err:
        progress.close()
        if isinstance(err, ValueError) and not (run_dir / "status.json").exists():
            raise UsageError(str(err)) from None  # refused before anything was written (e.g. a model
            # that does not load or a vocabulary mismatch)
        if _DEBUG:
            raise
        # the run recorded the failure (status.json, and the traceback in events.jsonl): one line
        print(
            f"error: run failed: {describe(err)} (recorded in {run_dir}/status.json; traceback in events.jsonl)",
            file=sys.stderr,
        )
        return 1
    finally:
        progress.close()
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return _finish(path)


def cmd_train(args) -> int:
    from adakd.presets import resolve_preset
    from adakd.training.runsetup import default_run_name, preflight
    from adakd.training.trainer import train

    try:
        config = resolve_preset(args.preset, args.set)
        preflight(config)
    except ValueError as err:
        raise UsageError(str(err)) from None
    root = runs_root(args.root)
    try:
        name = check_run_name(args.name) if args.name else None
    except ValueError as err:
        raise UsageError(str(err)) from None
    if args.run_dir:
        candidates = [Path(args.run_dir)]
    elif name:
        candidates = [root / name]
    else:  # several starts in the same second: the first free of <preset>-<time>, -2, -3, ...
        base = default_run_name(args.preset)
        candidates = [root / (base if i == 1 else f"{base}-{i}") for i in range(1, 100)]
    total = config.max_steps
    with ExitStack() as held:
        path = _claim(candidates, held) if _rank() == 0 else candidates[0]

        def call(progress):
            command = [sys.executable, "-m", "adakd", *args.argv]  # reproduces this run's config
            return train(
                config,
                path,
                name=path.name,
                preset=args.preset,
                command=command,
                on_step=lambda r: progress({**r, "total_steps": total}),
            )

        return _run_training(call, args.quiet, path)


def _claim(candidates: list[Path], held: ExitStack) -> Path:
    """The first candidate folder whose lock this process gets (kept in `held`), for a new run.

    Taken before any model loads, so two starts never write one folder; with several
    candidates (a default name), one that is taken or busy moves on to the next.
    """
    for i, path in enumerate(candidates):
        last = i == len(candidates) - 1
        try:
            held.enter_context(new_run_lock(path))
            return path
        except (ValueError, RunBusy) as err:
            if last:
                raise UsageError(str(err)) from None
        except OSError as err:
            raise UsageError(
                f"cannot create run folder {path}: {err.strerror}: choose a folder you can "
                "write to (--run-dir) or another --root"
            ) from None
    raise AssertionError("unreachable")


def cmd_resume(args) -> int:
    path = _resolve_run(args.run, runs_root(args.root))
    with _locked(path):  # before the run is read or a model loads: a second resume stops here
        from adakd.training.trainer import check_resumable, resume

        try:
            config, _ = check_resumable(path)
        except ValueError as err:
            raise UsageError(str(err)) from None

        def call(progress):
            return resume(path, on_step=lambda r: progress({**r, "total_steps": config.max_steps}))

        return _run_training(call, args.quiet, path)


@contextmanager
def _locked(path: Path):
    """Hold the lock of the existing run `path` (rank 0 only: the other ranks never write)."""
    if not (path / "config.json").is_file():  # refused without leaving a lock file in a stranger's folder
        raise UsageError(f"{path} has no readable config.json: not a run directory")
    if _rank() != 0:
        yield path
        return
    with ExitStack() as held:
        try:
            held.enter_context(run_lock(path, create=False))
        except (RunBusy, ValueError) as err:
            raise UsageError(str(err)) from None
        except OSError as err:
            raise UsageError(f"cannot lock run folder {path}: {err.strerror}: check its permissions") from None
        yield path


def _run_rows(root: Path) -> list[dict]:
    rows: list[dict] = []
    if not root.is_dir():
        return rows
    for child in sorted(root.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if (child / "sweep.json").exists():
            rows += [{**r, "name": f"{child.name}/{r['name']}"} for r in _run_rows(child)]
            continue
        run = RunDir(child)
        status, meta = run.read_status(), run.read_config()
        if status is None and meta is None:
            continue
        metrics = run.read_metrics()
        evals = [r for r in run.read_eval() if r.get("model") == "student"]
        problems = run_step_problems(run, metrics)
        state = run.effective_state()
        rows.append(
            {
                "name": child.name,
                "state": f"{state}, with gaps" if problems else state,
                "step": latest_step(status, metrics[-1].get("step") if metrics else None),
                "total": (status or {}).get("total_steps"),
                "loss": metrics[-1].get("loss") if metrics else None,
                "rouge_l": evals[-1].get("rouge_l_avg") if evals else None,
                "preset": (meta or {}).get("preset"),
                "started": (meta or {}).get("started_at"),
                "problems": problems,
            }
        )
    return rows


def cmd_list(args) -> int:
    root = runs_root(args.root)
    rows = _run_rows(root)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs under {root}/")
        return 0

    def fmt(v, spec=""):
        return "-" if v is None else format(v, spec)

    table = [("NAME", "STATE", "STEP", "LOSS", "ROUGE-L", "PRESET", "STARTED")]
    for r in rows:
        table.append(
            (
                r["name"],
                r["state"],
                f"{fmt(r['step'])}/{fmt(r['total'])}",
                fmt(r["loss"], ".4f"),
                fmt(r["rouge_l"], ".2f"),
                fmt(r["preset"]),
                fmt(r["started"]),
            )
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    for r in rows:  # what "with gaps" means, per run
        for problem in r["problems"]:
            print(f"{r['name']}: {problem}")
    return 0


def cmd_sweep(args) -> int:
    from adakd.training.runsetup import default_run_name
    from adakd.training.sweep import parse_grid, run_sweep

    try:
        grid = parse_grid(args.grid)
        root = runs_root(args.root)
        name = check_run_name(args.name or default_run_name(f"sweep-{args.preset or 'run'}"))
        folder = run_sweep(args.preset, grid, args.set, root, name)
    except ValueError as err:
        raise UsageError(str(err)) from None
    print(f"sweep: {folder}")
    return 0


def cmd_eval(args) -> int:
    path = _resolve_run(args.run, runs_root(args.root))
    for f in args.data or []:
        if not Path(f).is_file():
            raise UsageError(f"--data file {f!r} not found")
    overrides = {
        k: v
        for k, v in (("eval_seeds", args.seeds), ("eval_min_reference_words", args.min_reference_words))
        if v is not None
    }
    with _locked(path):  # eval appends to eval.jsonl: one writer at a time
        from adakd.evaluation.evaluate import evaluate_run

        _quiet_transformers()
        try:
            result = evaluate_run(path, args.data or None, args.examples, args.greedy, overrides)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        return 0
    from adakd.evaluation.protocol import summary_table
    from adakd.runs.rundir import RunDir

    # the run's own teacher / initial-student records on the same sets, when it has them, for scale
    earlier = [
        r
        for r in RunDir(path).read_eval()
        if r.get("model") in ("teacher", "student_init") and set(r.get("rouge_l") or {}) == set(result["rouge_l"])
    ]
    print(summary_table(earlier[-2:] + [result]))
    return 0


def cmd_rebuild(args) -> int:
    """Train a run's student again from its config.json into the cache (adakd/training/rebuild.py)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from adakd.training.rebuild import rebuild_student, rebuilt_checkpoint

    path = _resolve_run(args.run, runs_root(args.root))
    _quiet_transformers()
    progress = _Progress(args.quiet)
    total = None
    try:
        total = json.loads((path / "config.json").read_text())["config"].get("max_steps")
    except (OSError, ValueError, KeyError, TypeError):
        pass  # rebuild_student says what is wrong with config.json
    try:
        with logging_redirect_tqdm():
            folder = rebuild_student(path, on_step=lambda r: progress({**r, "total_steps": total}))
    except ValueError as err:
        raise UsageError(str(err)) from None
    finally:
        progress.close()
    report = (rebuilt_checkpoint(path) or (None, None, {}))[2]
    print(
        f"rebuilt student: {folder} (loss matches the run within {report.get('max_loss_difference')} "
        f"over {report.get('steps_compared')} steps)"
    )
    return 0


def cmd_teacher(args) -> int:
    """Fine-tune the teacher a config asks for (teacher_sft_steps) into the cache; print its folder."""
    from adakd.presets import resolve_preset
    from adakd.training.teacher_sft import distillation_teacher

    if args.run is not None:  # the teacher a run's config.json names (e.g. a sample run's, on a fresh machine)
        if args.preset or args.set:
            raise UsageError("--run takes the config from the run's config.json: leave out --preset and --set")
        config = _run_config(_resolve_run(args.run, runs_root(args.root)))
    else:
        try:
            config = resolve_preset(args.preset, args.set)
        except ValueError as err:
            raise UsageError(str(err)) from None
    if not config.teacher_sft_steps:
        raise UsageError(
            "teacher_sft_steps is 0 in this config, so there is no teacher to fine-tune: "
            "add e.g. --set teacher_sft_steps=300"
        )
    _quiet_transformers()
    print(distillation_teacher(config))
    return 0


def _run_config(path: Path):
    """The RunConfig in a run folder's config.json; a UsageError that says what is wrong with it."""
    from adakd.config import RunConfig
    from adakd.runs.rundir import recorded_config

    fields = recorded_config(path)
    if fields is None:
        raise UsageError(f"{path}: config.json is missing or unreadable, so its config is unknown")
    try:
        return RunConfig.from_record(fields)
    except ValueError as err:
        raise UsageError(f"{path}/config.json: {err}") from None


def cmd_dashboard(args) -> int:
    """Serve the dashboard (adakd/dashboard.py); --print-command only shows how."""
    from adakd.dashboard import serve, shell_line, streamlit_command

    try:
        command = streamlit_command(args.streamlit_args)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    root = runs_root(args.root)
    if args.print_command:
        print(shell_line(command, root))
        return 0
    serve(command, root)


def cmd_settings(args) -> int:
    """List RunConfig's settings (from their field metadata, adakd/config_docs.py)."""
    from adakd.config_docs import settings_markdown, settings_text

    try:
        print(settings_markdown() if args.markdown else settings_text(args.names), end="" if args.markdown else "\n")
    except ValueError as err:
        raise UsageError(str(err)) from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    from adakd.presets import PRESETS

    parser = argparse.ArgumentParser(prog="adakd", description="AdaKD distillation runs (also `python -m adakd`)")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--root", help=ROOT_HELP)
        p.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
        p.add_argument("--debug", action="store_true", help="show the traceback of a failure")

    def config_options(p, set_help: str) -> None:  # the config a command builds: --preset, then --set
        p.add_argument(
            "--preset", choices=list(PRESETS), default=None, help="named config (default: RunConfig defaults)"
        )
        p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE", help=set_help)

    p = sub.add_parser(
        "train",
        help="start a run",
        epilog="Data-parallel: the same arguments under "
        "`torchrun --nproc_per_node N -m adakd train ...` (gloo on CPU, nccl on CUDA); "
        "rank 0 writes the run directory.",
    )
    config_options(
        p,
        "override config fields, e.g. --set lr=1e-4 idts_c=0.3 student_layers=0,6,12 max_train_examples=none "
        "(lists comma separated or JSON, dicts JSON, bools true/false); `python -m adakd settings` lists every field "
        "with its default and allowed values",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="run folder path (must not exist or be empty)")
    where.add_argument("--name", help="run name under the runs root (default <preset>-<time>)")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "teacher",
        help="fine-tune the teacher a config asks for (teacher_sft_steps) into the cache, before a run "
        "needs it (e.g. ahead of a data-parallel run); prints its folder",
    )
    config_options(p, "override config fields, as for train; the fields of the fine-tuning's recipe decide the teacher")
    p.add_argument(
        "--run",
        help="instead of --preset / --set: the config of this run folder (or run name), e.g. a sample run's "
        "teacher on a machine that has not built it yet",
    )
    common(p)
    p.set_defaults(func=cmd_teacher)

    p = sub.add_parser("resume", help="continue a stopped or crashed run from its last checkpoint")
    p.add_argument("run", help="run folder, or run name under the runs root")
    common(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser(
        "rebuild",
        help="train a run's student again from its config.json into the cache "
        "(for runs that kept no checkpoint, e.g. the sample runs)",
    )
    p.add_argument("run", help="run folder, or run name under the runs root")
    common(p)
    p.set_defaults(func=cmd_rebuild)

    p = sub.add_parser("list", help="list runs with state and headline numbers")
    p.add_argument("--root", help=ROOT_HELP)
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("sweep", help="run a grid of configs one after another")
    p.add_argument("--preset", choices=list(PRESETS), default=None)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="KEY=V1,V2",
        help="an axis of the grid (repeatable), or a named grid such as 'ablation'",
    )
    p.add_argument(
        "--set",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="override config fields for every point, as for train (`python -m adakd settings` lists them)",
    )
    p.add_argument("--name", help="sweep folder name under the root")
    common(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "settings",
        help="list the config fields --set takes: type, default, allowed values, meaning",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="only these fields (default: all)")
    p.add_argument("--markdown", action="store_true", help="all fields as docs/contracts.md's table")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.set_defaults(func=cmd_settings)

    p = sub.add_parser("eval", help="evaluate a run's latest checkpoint (ROUGE-L)")
    p.add_argument("run", help="run folder, or run name under the runs root")
    p.add_argument("--data", action="append", help="Dolly JSONL / Alpaca JSON file (repeatable)")
    p.add_argument("--examples", type=int, default=None, help="examples per dataset")
    p.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling")
    p.add_argument("--seeds", type=int, default=None, help="generation seeds averaged (default: the run's eval_seeds)")
    p.add_argument(
        "--min-reference-words",
        type=int,
        default=None,
        help="score only references of at least N words (default: the run's eval_min_reference_words)",
    )
    p.add_argument("--json", action="store_true", help="the full record (with sample replies) as JSON")
    common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "dashboard",
        help="open the Streamlit dashboard (streamlit run app/main.py)",
        description="Open the Streamlit dashboard on the runs root and the shipped sample runs. "
        "Arguments this command does not know go to Streamlit, e.g. `adakd dashboard --server.port 8502`.",
        allow_abbrev=False,  # a Streamlit flag must never be taken for an abbreviation of ours
    )
    p.add_argument("--root", help=ROOT_HELP)
    p.add_argument("--print-command", action="store_true", help="print the command that serves it and exit")
    p.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    p.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "dashboard":  # only the dashboard passes arguments on (to Streamlit)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.streamlit_args = unknown[1:] if unknown[:1] == ["--"] else unknown
    args.argv = argv
    global _DEBUG
    _DEBUG = args.debug
    _setup_logging(getattr(args, "quiet", False))
    try:
        return args.func(args)
    except (UsageError, RunBusy) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)  # one line, whatever the source wrote
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # anything unforeseen: still one line, the traceback on request
        if args.debug:
            raise
        print(f"error: {describe(err)} (run again with --debug for the traceback)", file=sys.stderr)
        return 1
