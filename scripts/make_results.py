"""Build docs/results.md and docs/figures/ from the finished runs under sample_runs/.

    .venv/bin/python scripts/make_results.py                 # tables, figures, report
    .venv/bin/python scripts/make_results.py --no-figures    # tables and report only (no browser)

The report itself is built by ``analysis.report`` (every number computed from the run
directories); this script exports the figures (PNG + SVG, one headless browser) and writes the
page atomically.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from adakd.runs.atomic import write_text_atomic
from analysis.report import build_figures, build_report, collect_study

REPO_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("make_results")
PNG_SCALE = 1.5


# ---------------------------------------------------------------- main


def export_figures(figures: dict, out_dir: Path) -> set[str]:
    """PNG + SVG of every figure with one browser; returns the names written."""
    from analysis.export import ExportError, ExportServer, export_many

    if not figures:
        return set()
    try:
        with ExportServer(timeout=120) as server:
            export_many(
                {n: f for n, (f, _) in figures.items()},
                ("png", "svg"),
                out_dir,
                scale=PNG_SCALE,
                timeout=120,
                server=server,
            )
    except ExportError as err:
        log.error("figure export failed: %s", err)
        return set()
    return set(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT / "sample_runs")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "results.md")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG/SVG export")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("kaleido", "choreographer", "logistro"):  # browser chatter at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    study = collect_study(args.root)
    log.info("%d finished runs under %s", len(study.runs), args.root)
    figures = build_figures(study) if study.runs else {}
    # docs/results.md -> docs/figures/; any other page -> <page>-figures/ beside it
    rel = "figures" if args.out.name == "results.md" else f"{args.out.stem}-figures"
    fig_dir = args.out.parent / rel
    if not args.no_figures:
        exported = export_figures(figures, fig_dir)
    else:
        exported = {n for n in figures if (fig_dir / f"{n}.png").is_file()}
    write_text_atomic(args.out, build_report(study, args.root, exported, figures, rel))
    log.info("wrote %s (%d figures)", args.out, len(exported or ()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
