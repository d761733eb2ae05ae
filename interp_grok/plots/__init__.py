"""Plotly figures, one module per analysis; functions return figures and never show them."""

from .common import mark_milestones, save_html, training_curves

__all__ = ["mark_milestones", "save_html", "training_curves"]
