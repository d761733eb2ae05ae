"""Shared plot pieces: grokking milestones, training curves, self-contained HTML."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..checkpoints import atomic_write
from ..run import milestones as find_milestones

MILESTONE_LABELS = {"memorization": "train acc ≥ 99%", "grokking": "test acc ≥ 99%"}
TRAIN_COLOR, TEST_COLOR = "#1f77b4", "#d62728"


def mark_milestones(fig: go.Figure, milestones: dict[str, int | None], log_x: bool = False,
                    labels: bool = True, **line_kwargs) -> go.Figure:
    """Dashed vertical lines at the memorization and grokking steps (on every subplot), labelled
    unless `labels=False` (small multiples, where the title should say what the lines are).

    log_x: the step axis is (or will be) logarithmic. Plotly places shapes by data value on a log
    axis but annotations by log10 of it, so the labels then need log10(step).
    """
    for (key, label), side in zip(MILESTONE_LABELS.items(), ("top left", "top right")):  # labels apart
        step = milestones.get(key)
        if step is None:
            continue
        text = dict(annotation_text=f"{label} (step {step})", annotation_position=side, annotation_font_size=10,
                    annotation={"x": math.log10(max(step, 1))} if log_x else None) if labels else {}
        fig.add_vline(x=max(step, 1e-9), line_dash="dash", line_color="gray", opacity=0.7, **text, **line_kwargs)
    return fig


def training_curves(metrics: pd.DataFrame, title: str = "", log_x: bool = False) -> go.Figure:
    """Train/test loss (log y) and accuracy against step (linear x by default), milestones marked."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"))
    for split, color in (("train", TRAIN_COLOR), ("test", TEST_COLOR)):
        for col, metric in ((1, "loss"), (2, "acc")):
            fig.add_trace(go.Scatter(x=metrics["step"], y=metrics[f"{split}_{metric}"], name=split,
                                     line_color=color, legendgroup=split, showlegend=col == 1), row=1, col=col)
    fig.update_yaxes(type="log", title_text="cross-entropy (nats)", row=1, col=1)
    fig.update_yaxes(title_text="accuracy", range=[0, 1.02], row=1, col=2)
    fig.update_xaxes(title_text="training step", type="log" if log_x else "linear")
    mark_milestones(fig, find_milestones(metrics), log_x=log_x)
    fig.update_layout(title=title or "Training curves", template="plotly_white", height=420)
    return fig


def save_html(fig: go.Figure, path: str | Path) -> Path:
    """Write a self-contained HTML file (plotly.js inlined: opens offline)."""
    path = Path(path)
    atomic_write(path, fig.to_html(include_plotlyjs=True, full_html=True))
    return path
