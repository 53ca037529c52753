"""The dashboard's figures, drawn from the tables (never read back as pixels).

Each function returns a matplotlib Figure, so a test can check the data behind it
(the bar heights) and the notebook can display it.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")  # headless: Voila and the tests draw without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MAX_COLUMNS = 4


def score_histogram(scores: pd.Series, max_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Counts of submissions per score, bins one point wide from 0 to `max_score` (inclusive)."""
    num_bins = max(1, int(math.ceil(max_score)) + 1)
    edges = np.arange(num_bins + 1) - 0.5
    counts, _ = np.histogram(np.clip(scores.to_numpy(dtype=float), 0, max_score), bins=edges)
    return counts, edges


def score_distributions(scores: pd.DataFrame) -> plt.Figure:
    """One small histogram per (lab, question): how many submissions got each score."""
    groups = list(scores.groupby(["lab", "question"], sort=True)) if not scores.empty else []
    num_cols = min(MAX_COLUMNS, max(1, len(groups)))
    num_rows = max(1, math.ceil(len(groups) / num_cols))
    fig, axes = plt.subplots(num_rows, num_cols, figsize=(3.2 * num_cols, 2.4 * num_rows), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_axis_off()
    if not groups:
        axes[0, 0].text(0.5, 0.5, "no scores for this filter", ha="center", va="center")
    for ax, ((lab, question), group) in zip(axes.flat, groups):
        max_score = float(group["max_score"].iloc[0])
        counts, edges = score_histogram(group["score"], max_score)
        ax.bar((edges[:-1] + edges[1:]) / 2, counts, width=0.8, color="tab:blue")
        ax.set_xticks(range(len(counts)) if len(counts) <= 11 else np.linspace(0, len(counts) - 1, 6).round())
        ax.set_title(f"{question}\n({lab})", fontsize=8)
        ax.set_xlabel(f"score (max {max_score:g})", fontsize=8)
        ax.set_ylabel("submissions", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def grading_times(times: pd.DataFrame) -> plt.Figure:
    """Horizontal bars: grading time per submission (seconds), longest on top."""
    known = times.dropna(subset=["grading_s"]).sort_values("grading_s")
    fig, ax = plt.subplots(figsize=(7, 0.3 * max(3, len(known)) + 0.8))
    if known.empty:
        ax.text(0.5, 0.5, "no grading times known", ha="center", va="center")
        ax.set_axis_off()
    else:
        labels = [f"{s} / {lab}" for s, lab in zip(known["student"], known["lab"])]
        ax.barh(labels, known["grading_s"], color="tab:orange")
        ax.set_xlabel("grading time (s)")
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig
