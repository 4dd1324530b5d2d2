"""docs/results.md from the finished runs of a sample-runs root (scripts/make_results.py).

Every number in the report is computed from the run directories (config.json, metrics.jsonl,
tokens.parquet, gradients.parquet, eval.jsonl) with the project's own analysis code
(analysis.runs, analysis.tables, analysis.figures); only the paper's numbers
(``settings.PAPER_*``, from docs/method.md §9) are constants. Runs that are not finished are left
out and listed as missing, so the report can be regenerated at any point while
``scripts/make_sample_runs.sh`` is still producing the study.

    study = collect_study("sample_runs")           # the runs of its most common recipe
    figures = build_figures(study)                  # name -> (plotly figure, reading)
    text = build_report(study, Path("sample_runs"), exported=set(figures), figures=figures)

Modules, in the report's order: ``study`` (grouping), ``numbers`` (per-run numbers),
``markdown`` (formatting), ``setup_sections``, ``table_sections``, ``table1_section``, ``figures``,
``report``.
"""

from analysis.report.figures import build_figures
from analysis.report.numbers import sample_noise
from analysis.report.report import build_report
from analysis.report.study import Study, collect_runs, collect_study

__all__ = ["Study", "build_figures", "build_report", "collect_runs", "collect_study", "sample_noise"]
