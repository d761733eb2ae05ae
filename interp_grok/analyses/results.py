"""Saving and loading analysis results: tidy tables as CSV, arrays as safetensors, metadata as JSON.

A result directory (default `analyses/<run>/<analysis>/`) holds `meta.json`, one `<table>.csv`
per table and `arrays.safetensors`; every file is written atomically and `meta.json` last, so a
directory with a `meta.json` is complete.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
from torch import Tensor

from ..checkpoints import CheckpointError, atomic_write, load_tensors, save_tensors

DEFAULT_ROOT = Path("analyses")


def result_dir(run, analysis: str, root: str | Path | None = None) -> Path:
    """`<root>/<run name>/<analysis>` with root defaulting to ./analyses."""
    return Path(root if root is not None else DEFAULT_ROOT) / run.name / analysis


def save_result(
    directory: str | Path, *, tables: dict[str, pd.DataFrame], arrays: dict[str, Tensor] | None = None,
    meta: dict | None = None,
) -> Path:
    directory = Path(directory)
    for name, table in tables.items():
        atomic_write(directory / f"{name}.csv", table.to_csv(index=False))
    if arrays:
        save_tensors(directory / "arrays.safetensors", arrays)
    atomic_write(directory / "meta.json", json.dumps({"tables": sorted(tables), "arrays": bool(arrays),
                                                      **(meta or {})}, indent=1))
    return directory


def load_result(directory: str | Path) -> tuple[dict[str, pd.DataFrame], dict[str, Tensor], dict]:
    """(tables, arrays, meta) of a saved result; a clear error when it is missing or incomplete."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "meta.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no saved result here (run `interp-grok analyze` first)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{directory / 'meta.json'}: unreadable ({e})") from None
    meta.pop("fingerprint", None)  # stamped by analyses.suite for caching; not part of any result
    tables = {}
    for name in meta.pop("tables"):
        try:
            tables[name] = pd.read_csv(io.StringIO((directory / f"{name}.csv").read_text()))
        except (FileNotFoundError, pd.errors.ParserError) as e:
            raise CheckpointError(f"{directory / (name + '.csv')}: missing or unreadable ({e})") from None
    arrays = load_tensors(directory / "arrays.safetensors")[0] if meta.pop("arrays") else {}
    return tables, arrays, meta
