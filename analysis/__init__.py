"""analysis: run directories and live models -> tidy DataFrames and Plotly figures.

Never imports streamlit, so every figure works from a notebook, a script or a test.

    analysis.runs        load_run / load_runs / find_runs / list_runs / method_label
    analysis.figures     one module per paper figure: `*_frame(run(s)) -> DataFrame`,
                         `*_figure(df) -> go.Figure`
    analysis.tables      results_table / ablation_table (paper Tables 2–5 shape)
    analysis.style       paper colours (hard blue, mid grey, easy orange) and apply_style
    analysis.explorer    token explorer for custom prompts
    analysis.attribution Captum attributions
    analysis.export      PNG / SVG / PDF / HTML / CSV export and report bundles

Submodules are imported on use (this package imports nothing heavy by itself).
"""
