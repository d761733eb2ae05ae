"""The one helper that maps a per-checkpoint computation over a run's steps.

Analyses accept a `Run` (result with a step axis) or a single `GrokTransformer` (no step axis);
`over_steps` hides the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ..model import GrokTransformer
from ..run import Run

T = TypeVar("T")


def over_steps(
    run_or_model: Run | GrokTransformer,
    fn: Callable[[GrokTransformer], T],
    *,
    steps: Sequence[int] | None = None,
    progress: bool = False,
) -> tuple[list[int] | None, list[T]]:
    """(steps, [fn(model at step) for each step]); for a single model (None, [fn(model)])."""
    if isinstance(run_or_model, GrokTransformer):
        if steps is not None:
            raise ValueError("steps= only applies to a Run; a single model has no steps")
        return None, [fn(run_or_model)]
    if not isinstance(run_or_model, Run):
        raise TypeError(f"expected a Run or a GrokTransformer, got {type(run_or_model).__name__}")
    resolved, results = [], []
    for step, model in run_or_model.models(steps, progress=progress):
        resolved.append(step)
        results.append(fn(model))
    return resolved, results
