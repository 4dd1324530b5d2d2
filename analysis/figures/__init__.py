"""The paper's figures, one module each; every figure is a frame function (run(s) -> tidy
DataFrame with documented columns) and a figure function (DataFrame -> go.Figure).

    dynamics     Fig. 1 top (difficulty heat map, group bands), Fig. 3a (loss + LATF ratio)
    gradients    Fig. 1 bottom (cos with SFT gradient, norm share, cos with total)
    temperature  Fig. 4 (τ / entropy histogram grid, hard vs easy, early vs late)
    compare      Fig. 3b (loss curves), Fig. 3c–d (c sweep), token-level diff of two runs
    regime       student-generated data (GKD / DistiLLM): λ/φ, on-policy share, buffer, gen. length
    ctkd         CTKD's learned temperature and its gradient-reversal strength over training
    competence   held-out CE (share of the gap to the teacher closed) and degenerate replies per evaluation
"""

from analysis.figures.compare import (
    c_sweep_figure,
    c_sweep_frame,
    loss_curves_figure,
    loss_curves_frame,
    token_diff_figure,
    token_diff_frame,
)
from analysis.figures.competence import competence_figure, competence_frame
from analysis.figures.ctkd import ctkd_figure, ctkd_frame
from analysis.figures.dynamics import (
    difficulty_heatmap_figure,
    difficulty_heatmap_frame,
    group_difficulty_figure,
    group_difficulty_frame,
    loss_ratio_figure,
    loss_ratio_frame,
)
from analysis.figures.gradients import gradient_cosine_figure, gradient_frame, gradient_share_figure
from analysis.figures.regime import regime_figure, regime_frame
from analysis.figures.temperature import histogram_frame, histogram_grid_figure

__all__ = [
    "competence_frame",
    "competence_figure",
    "difficulty_heatmap_frame",
    "difficulty_heatmap_figure",
    "group_difficulty_frame",
    "group_difficulty_figure",
    "loss_ratio_frame",
    "loss_ratio_figure",
    "gradient_frame",
    "gradient_cosine_figure",
    "gradient_share_figure",
    "histogram_frame",
    "histogram_grid_figure",
    "loss_curves_frame",
    "loss_curves_figure",
    "c_sweep_frame",
    "c_sweep_figure",
    "token_diff_frame",
    "token_diff_figure",
    "regime_frame",
    "regime_figure",
    "ctkd_frame",
    "ctkd_figure",
]
