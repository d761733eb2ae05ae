"""Fourier analysis of additive tasks (add, sub): per-mode loss contributions, key frequencies, progress measures.

```python
from interp_grok.analyses import fourier
res = fourier.mode_losses(run)          # step, k, split, restricted_loss, excluded_loss, logit_share
res.key_frequencies                     # the modes the final model uses, e.g. [14, 35, 41, 42, 52]
fourier.progress_measures(run)          # restricted / excluded loss and Gini sparsity per step
fourier.key_frequencies(model); fourier.neuron_frequencies(model)
fourier.analyze(run).figures()          # everything `interp-grok analyze RUN --fourier` runs
```

Definitions (DESIGN.md). Logits L[a, b, c] over the p² inputs; the "mode k" of L is its projection onto
span{cos(w_k(a ± b - c)), sin(w_k(a ± b - c))}, w_k = 2πk/p (+ for add, - for sub), k = 1..p//2. Modes are
orthogonal, and each is a function of s = (a ± b - c) mod p only, so it is computed from the mean of the
logits by s (`interp_grok.basis`). Per step, k and split:
- restricted_loss: cross-entropy of the logits restricted to mode k (the same for every input, since a
  function of s only is the same up to a shift of the classes for each input);
- excluded_loss: mean cross-entropy of L with mode k removed, over the split's inputs;
- logit_share: |mode k|² / |L - mean_c L|² over the split's inputs (the constant-in-c part does not change
  the softmax). On split "all" the shares are an orthogonal decomposition and sum to at most 1.
Key frequencies: each frequency's share of the embedding W_E (token rows 0..p-1, Fourier along the token
axis) and of the neuron-to-logit map W_out @ W_U (Fourier along the output class) is averaged; frequencies
whose share is at least `threshold` (default 0.1) times the largest share are key. A random model spreads
power evenly, so nearly every frequency is key; a grokked one concentrates it on a few.
Progress measures (Nanda et al. 2023), with the key frequencies of the final checkpoint: restricted loss
(only the key modes kept), excluded loss (key modes removed, on the training set; also test and all), the
key modes' logit share, and Gini coefficients of the per-frequency norms of W_E and W_out @ W_U.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import basis
from ..evaluate import final_logits
from ..model import GrokTransformer
from ..plots import fourier as fourier_plots
from ..run import Run
from ..tasks import Dataset
from .results import load_result, save_result
from .trajectory import over_steps

KEY_THRESHOLD = 0.1
"""A frequency is key when its mean share of W_E and W_out @ W_U power is >= this times the largest share."""
SPLITS = ("train", "test", "all")
_SIGNS = {"add": 1, "sub": -1}
MODE_COLUMNS = ["step", "k", "split", "restricted_loss", "excluded_loss", "logit_share"]
PROGRESS_COLUMNS = ["step", "train_loss", "test_loss", "restricted_loss", "excluded_loss", "excluded_loss_test",
                    "excluded_loss_all", "key_share", "gini_embed", "gini_logit_map", "n_key_frequencies"]
FREQUENCY_COLUMNS = ["step", "k", "embed_share", "logit_map_share", "share", "is_key"]


# --------------------------------------------------------------------------------------------- weights


def _check_model(model: GrokTransformer) -> int:
    p = model.d_vocab_out
    if model.d_vocab != p + 1:
        raise ValueError(f"model has d_vocab={model.d_vocab}, d_vocab_out={p}; expected a mod-p model with "
                         f"d_vocab = p + 1 (GrokTransformer.for_task)")
    return p


def _layer_index(model: GrokTransformer, layer: int) -> int:
    n = model.cfg.n_layers
    if not -n <= layer < n:
        raise ValueError(f"layer={layer} is out of range for a model with {n} layer(s)")
    return layer % n


def _frequency_power(model: GrokTransformer, layer: int) -> tuple[Float[Tensor, " n_freq"], Float[Tensor, " n_freq"]]:
    """Power of each frequency k = 1..p//2 in W_E[:p] (along tokens) and W_out @ W_U (along output classes)."""
    p = _check_model(model)
    with torch.no_grad():
        W_E = model.embed.W_E[:p].double().cpu()  # [p tokens, d_model]
        W_L = (model.blocks[_layer_index(model, layer)].mlp.W_out.double() @ model.unembed.W_U.double()).cpu()  # [d_mlp, p]
        return basis.frequency_power(W_E.T).sum(0)[1:], basis.frequency_power(W_L).sum(0)[1:]


def frequency_shares(model: GrokTransformer, *, layer: int = -1) -> tuple[Float[Tensor, " n_freq"], Float[Tensor, " n_freq"]]:
    """(embed_share, logit_map_share) [p//2] for k = 1..p//2: each frequency's share of the non-constant
    power of W_E[:p] (along tokens) and of W_out @ W_U of `layer` (along output classes)."""
    embed, logit_map = _frequency_power(model, layer)
    return embed / embed.sum().clamp_min(1e-300), logit_map / logit_map.sum().clamp_min(1e-300)


def _key_mask(share: Float[Tensor, " n_freq"], threshold: float) -> Tensor:
    return share >= threshold * share.max()


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must be in (0, 1], e.g. {KEY_THRESHOLD}")


def key_frequencies(model: GrokTransformer, *, threshold: float = KEY_THRESHOLD, layer: int = -1) -> list[int]:
    """The frequencies k the model uses: mean share of W_E and W_out @ W_U power >= threshold x the largest."""
    _check_threshold(threshold)
    embed, logit_map = frequency_shares(model, layer=layer)
    return [int(k) + 1 for k in _key_mask((embed + logit_map) / 2, threshold).nonzero().flatten()]


def _all_pairs(p: int, device: torch.device) -> Int[Tensor, "p_squared 3"]:
    a, b = torch.cartesian_prod(torch.arange(p), torch.arange(p)).unbind(1)
    return torch.stack([a, b, torch.full_like(a, p)], dim=1).to(device)


def neuron_frequencies(
    model: GrokTransformer, *, layer: int = -1
) -> tuple[Int[Tensor, " d_mlp"], Float[Tensor, " d_mlp"]]:
    """(freq, fraction) [d_mlp]: each neuron's dominant frequency k >= 1 and the fraction of its activation
    variance over all p² inputs (at `=`, constant removed) explained by the 2-D Fourier terms of frequency k:
    cos/sin(w_k a), cos/sin(w_k b) and their four products. Neurons that never vary get fraction 0."""
    p = _check_model(model)
    layer = _layer_index(model, layer)
    name = f"blocks.{layer}.mlp.hook_post"
    with torch.no_grad():
        _, cache = model.run_with_cache(_all_pairs(p, next(model.parameters()).device), final_only=True,
                                        names_filter=name)
    acts = cache[name][:, -1].double().cpu().reshape(p, p, -1)  # [a, b, neuron]
    B = basis.fourier_basis(p)
    coefficients = torch.einsum("ia,jb,abn->nij", B, B, acts).pow(2)  # [neuron, a-row, b-row]
    coefficients[:, 0, 0] = 0.0  # the constant
    freq_of_row = basis.basis_frequencies(p)
    ka, kb = freq_of_row[:, None], freq_of_row[None, :]
    # terms of frequency k: (k, 0), (0, k) and (k, k) in (a, b)
    k = torch.arange(1, basis.n_frequencies(p) + 1)[:, None, None]
    terms = ((ka == k) & ((kb == 0) | (kb == k))) | ((ka == 0) & (kb == k))  # [n_freq, a-row, b-row]
    per_freq = torch.einsum("nij,kij->nk", coefficients, terms.double())  # [neuron, n_freq]
    total = coefficients.sum((1, 2))
    fraction, index = (per_freq / total.clamp_min(1e-300)[:, None]).max(-1)
    return index + 1, torch.where(total > 0, fraction, torch.zeros_like(fraction))


# ---------------------------------------------------------------------------------------- per-checkpoint


@dataclass(frozen=True)
class _Context:
    p: int
    op: str
    masks: dict[str, Tensor]  # split -> [p²] bool
    key_freqs: list[int]
    threshold: float
    layer: int


def decompose_logits(
    logits: Float[Tensor, "p_squared p"], *, key_freqs: Sequence[int], op: str = "add",
    masks: dict[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """The per-mode decomposition of the logits of all p² inputs (lexicographic (a, b)), as tensors.

    Returns restricted [n_freq] (loss with only mode k), restricted_key [] (only the key modes), and per
    split in `masks` (default {"all": every input}): excluded_<split> [n_freq + 1] (mean loss with mode k
    removed; the last entry removes all key modes), share_<split> [n_freq] (|mode k|² / |L - mean_c L|²)
    and loss_<split> [] (the logits' own loss). Losses are cross-entropies in nats, float64.
    """
    p = logits.shape[-1]
    if op not in _SIGNS:
        raise ValueError(f"op={op!r}: the Fourier decomposition applies to additive tasks (add, sub)")
    if logits.shape != (p * p, p):
        raise ValueError(f"logits must be [p*p, p] for all (a, b) pairs, got shape {tuple(logits.shape)}")
    if not all(1 <= k <= basis.n_frequencies(p) for k in key_freqs):
        raise ValueError(f"key_freqs={list(key_freqs)} must lie in 1..{basis.n_frequencies(p)} for p={p}")
    masks = masks if masks is not None else {"all": torch.ones(p * p, dtype=torch.bool)}
    aligned = basis.align_logits(logits.double().cpu(), basis.additive_answers(p, _SIGNS[op]))  # [p², p]
    modes = basis.direction_modes(aligned)[1:]  # [n_freq, p] mode k as a function of s
    key_mode = modes[[k - 1 for k in key_freqs]].sum(0)  # [p]
    removed = basis.losses_without(aligned, torch.cat([modes, key_mode[None]]))  # [p², n_freq + 1]
    full_loss = aligned.logsumexp(-1) - aligned[:, 0]  # [p²]
    energy = (aligned - aligned.mean(-1, keepdim=True)).pow(2).sum(-1)  # [p²] |L - mean_c L|² per input
    mode_energy = modes.pow(2).sum(-1)  # [n_freq], the same for every input
    out = {"restricted": basis.loss_of_direction_logits(modes), "restricted_key": basis.loss_of_direction_logits(key_mode)}
    for split, mask in masks.items():
        out[f"excluded_{split}"] = removed[mask].mean(0)
        out[f"share_{split}"] = mask.sum() * mode_energy / energy[mask].sum().clamp_min(1e-300)
        out[f"loss_{split}"] = full_loss[mask].mean()
    return out


def _step_stats(model: GrokTransformer, ctx: _Context) -> dict[str, Tensor]:
    """Everything the tables need at one checkpoint: `decompose_logits` plus the weights' frequency power."""
    if _check_model(model) != ctx.p:
        raise ValueError(f"model outputs {model.d_vocab_out} classes but the task has p={ctx.p}")
    with torch.no_grad():
        logits = final_logits(model, _all_pairs(ctx.p, next(model.parameters()).device))  # [p², p]
    embed_power, map_power = _frequency_power(model, ctx.layer)
    return {
        **decompose_logits(logits, key_freqs=ctx.key_freqs, op=ctx.op, masks=ctx.masks),
        "embed_share": embed_power / embed_power.sum().clamp_min(1e-300),
        "map_share": map_power / map_power.sum().clamp_min(1e-300),
        "gini_embed": basis.gini(embed_power.sqrt()), "gini_logit_map": basis.gini(map_power.sqrt()),
    }


def _context(run_or_model: Run | GrokTransformer, op: str | None, dataset: Dataset | None,
             key_freqs: Sequence[int] | None, threshold: float, layer: int) -> _Context:
    _check_threshold(threshold)
    if isinstance(run_or_model, Run):
        if dataset is not None:
            raise ValueError("dataset= only applies to a single model; a Run has its own dataset")
        dataset = run_or_model.dataset
    if dataset is not None:
        if op is not None and op != dataset.task.op:
            raise ValueError(f"op={op!r} contradicts the task's op={dataset.task.op!r}; leave op unset")
        op, p = dataset.task.op, dataset.task.p
    else:
        op = op or "add"
        if not isinstance(run_or_model, GrokTransformer):
            raise TypeError(f"expected a Run or a GrokTransformer, got {type(run_or_model).__name__}")
        p = _check_model(run_or_model)
    if op not in _SIGNS:
        raise ValueError(f"the Fourier analysis applies to additive tasks (add, sub); got op={op!r}. "
                         f"Multiplicative and polynomial tasks are not sums of modes of a ± b - c; analyse an "
                         f"add or sub run")
    final = run_or_model.model("final") if isinstance(run_or_model, Run) else run_or_model
    if final.d_vocab_out != p:
        raise ValueError(f"model outputs {final.d_vocab_out} classes but the task has p={p}")
    layer = _layer_index(final, layer)
    if key_freqs is None:
        key_freqs = key_frequencies(final, threshold=threshold, layer=layer)
    key_freqs = sorted({int(k) for k in key_freqs})
    if not key_freqs or not all(1 <= k <= basis.n_frequencies(p) for k in key_freqs):
        raise ValueError(f"key_freqs={key_freqs} must be a non-empty list of frequencies in 1..{basis.n_frequencies(p)}")
    masks = {"all": torch.ones(p * p, dtype=torch.bool)}
    if dataset is not None:
        masks = {"train": dataset.is_train, "test": ~dataset.is_train, **masks}
    return _Context(p=p, op=op, masks=masks, key_freqs=key_freqs, threshold=threshold, layer=layer)


def _compute(run_or_model, steps, progress, op, dataset, key_freqs, threshold, layer):
    ctx = _context(run_or_model, op, dataset, key_freqs, threshold, layer)
    resolved, stats = over_steps(run_or_model, lambda model: _step_stats(model, ctx), steps=steps, progress=progress)
    milestones = run_or_model.milestones if isinstance(run_or_model, Run) else {}
    return ctx, resolved if resolved is not None else [-1], stats, milestones


def _mode_table(ctx: _Context, steps: list[int], stats: list[dict]) -> pd.DataFrame:
    n_freq = basis.n_frequencies(ctx.p)
    frames = []
    for step, st in zip(steps, stats):
        for split in ctx.masks:
            frames.append(pd.DataFrame({
                "step": step, "k": range(1, n_freq + 1), "split": split,
                "restricted_loss": st["restricted"].numpy(), "excluded_loss": st[f"excluded_{split}"][:-1].numpy(),
                "logit_share": st[f"share_{split}"].numpy(),
            }))
    return pd.concat(frames, ignore_index=True)


def _progress_tables(ctx: _Context, steps: list[int], stats: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    nan = float("nan")
    keys = torch.tensor(ctx.key_freqs) - 1
    rows, frames = [], []
    for step, st in zip(steps, stats):
        share = (st["embed_share"] + st["map_share"]) / 2
        is_key = _key_mask(share, ctx.threshold)

        def split_value(name: str, split: str, index=None):
            if f"{name}_{split}" not in st:
                return nan
            value = st[f"{name}_{split}"]
            return (value if index is None else value[index]).item()

        rows.append({
            "step": step, "train_loss": split_value("loss", "train"), "test_loss": split_value("loss", "test"),
            "restricted_loss": st["restricted_key"].item(),
            "excluded_loss": split_value("excluded", "train", -1), "excluded_loss_test": split_value("excluded", "test", -1),
            "excluded_loss_all": split_value("excluded", "all", -1), "key_share": st["share_all"][keys].sum().item(),
            "gini_embed": st["gini_embed"].item(), "gini_logit_map": st["gini_logit_map"].item(),
            "n_key_frequencies": int(is_key.sum()),
        })
        frames.append(pd.DataFrame({
            "step": step, "k": range(1, len(share) + 1), "embed_share": st["embed_share"].numpy(),
            "logit_map_share": st["map_share"].numpy(), "share": share.numpy(), "is_key": is_key.numpy(),
        }))
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS), pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------------------------------------ results


def _check_columns(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} table is missing column(s) {missing}; expected {columns}")


def _check_common(p: int, op: str, key_frequencies: list[int]) -> None:
    if op not in _SIGNS:
        raise ValueError(f"op={op!r}: Fourier results exist only for additive tasks (add, sub)")
    if not key_frequencies or not all(1 <= k <= p // 2 for k in key_frequencies):
        raise ValueError(f"key_frequencies={key_frequencies} must be non-empty and within 1..{p // 2} for p={p}")


@dataclass
class ModeLosses:
    """Per-mode loss contributions.

    table: one row per (step, k, split): step (-1 for a single model), k in 1..p//2, split in
      train/test/all (only "all" for a single model without a dataset), restricted_loss and
      excluded_loss (mean cross-entropy, nats), logit_share (fraction of |L - mean_c L|², in [0, 1]).
    key_frequencies: the key frequencies of the final (or given) model, ascending.
    """

    table: pd.DataFrame
    key_frequencies: list[int]
    p: int
    op: str
    milestones: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self):
        _check_columns(self.table, MODE_COLUMNS, "mode-loss")
        _check_common(self.p, self.op, self.key_frequencies)
        if not self.table["k"].between(1, self.p // 2).all():
            raise ValueError(f"mode-loss table has k outside 1..{self.p // 2}")
        if not self.table["split"].isin(SPLITS).all():
            raise ValueError(f"mode-loss table has splits {sorted(set(self.table['split']))}; expected {SPLITS}")

    def _meta(self) -> dict:
        return {"key_frequencies": self.key_frequencies, "p": self.p, "op": self.op, "milestones": self.milestones}

    def save(self, directory: str | Path) -> Path:
        return save_result(directory, tables={"mode_losses": self.table}, meta={"kind": "mode_losses", **self._meta()})

    @classmethod
    def load(cls, directory: str | Path) -> ModeLosses:
        tables, _, meta = _load_kind(directory, "mode_losses")
        return cls(table=tables["mode_losses"], **_common_meta(meta))

    def plot(self, value: str = "logit_share", split: str = "all", log_x: bool = False) -> go.Figure:
        return fourier_plots.mode_heatmap(self.table, value=value, split=split, key_frequencies=self.key_frequencies,
                                  milestones=self.milestones, log_x=log_x)

    def figures(self) -> dict[str, go.Figure]:
        return {"mode_share": self.plot("logit_share"), "mode_restricted_loss": self.plot("restricted_loss")}


@dataclass
class ProgressMeasures:
    """Progress measures over training with fixed key frequencies (those of the final checkpoint).

    table: one row per step: train_loss, test_loss (the model's own cross-entropy, nats; NaN without a
      split), restricted_loss (only key modes kept, the same on every input), excluded_loss (key modes
      removed, training inputs), excluded_loss_test, excluded_loss_all, key_share (key modes' fraction of
      |L - mean_c L|² over all inputs), gini_embed and gini_logit_map (Gini of the per-frequency norms of
      W_E and W_out @ W_U, in [0, 1)), n_key_frequencies (how many frequencies are key at that step).
    frequencies: one row per (step, k): embed_share, logit_map_share, share (their mean), is_key.
    """

    table: pd.DataFrame
    frequencies: pd.DataFrame
    key_frequencies: list[int]
    p: int
    op: str
    threshold: float = KEY_THRESHOLD
    milestones: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self):
        _check_columns(self.table, PROGRESS_COLUMNS, "progress")
        _check_columns(self.frequencies, FREQUENCY_COLUMNS, "frequency")
        _check_common(self.p, self.op, self.key_frequencies)
        if not self.frequencies["k"].between(1, self.p // 2).all():
            raise ValueError(f"frequency table has k outside 1..{self.p // 2}")

    def _meta(self) -> dict:
        return {"key_frequencies": self.key_frequencies, "p": self.p, "op": self.op, "milestones": self.milestones,
                "threshold": self.threshold}

    def save(self, directory: str | Path) -> Path:
        return save_result(directory, tables={"progress": self.table, "frequencies": self.frequencies},
                           meta={"kind": "progress_measures", **self._meta()})

    @classmethod
    def load(cls, directory: str | Path) -> ProgressMeasures:
        tables, _, meta = _load_kind(directory, "progress_measures")
        return cls(table=tables["progress"], frequencies=tables["frequencies"], threshold=meta["threshold"],
                   **_common_meta(meta))

    def plot(self, log_x: bool = False) -> go.Figure:
        return fourier_plots.progress_lines(self.table, key_frequencies=self.key_frequencies, milestones=self.milestones,
                                    log_x=log_x)

    def figures(self) -> dict[str, go.Figure]:
        return {
            "progress": self.plot(),
            "sparsity": fourier_plots.sparsity_lines(self.table, milestones=self.milestones),
            "embedding_norms": fourier_plots.frequency_bars(self.frequencies, key_frequencies=self.key_frequencies),
            "frequency_evolution": fourier_plots.frequency_heatmap(self.frequencies, milestones=self.milestones),
        }


@dataclass
class FourierAnalysis:
    """What `interp-grok analyze RUN --fourier` computes: `modes` (ModeLosses) and `progress` (ProgressMeasures),
    from one pass over the checkpoints. `table` is the mode-loss table."""

    modes: ModeLosses
    progress: ProgressMeasures

    def __post_init__(self):
        if self.modes.key_frequencies != self.progress.key_frequencies or self.modes.p != self.progress.p:
            raise ValueError("modes and progress come from different analyses (key frequencies or p differ)")

    @property
    def table(self) -> pd.DataFrame:
        return self.modes.table

    @property
    def key_frequencies(self) -> list[int]:
        return self.modes.key_frequencies

    def save(self, directory: str | Path) -> Path:
        return save_result(directory, tables={"mode_losses": self.modes.table, "progress": self.progress.table,
                                              "frequencies": self.progress.frequencies},
                           meta={"kind": "fourier", **self.progress._meta()})

    @classmethod
    def load(cls, directory: str | Path) -> FourierAnalysis:
        tables, _, meta = _load_kind(directory, "fourier")
        common = _common_meta(meta)
        return cls(modes=ModeLosses(table=tables["mode_losses"], **common),
                   progress=ProgressMeasures(table=tables["progress"], frequencies=tables["frequencies"],
                                             threshold=meta["threshold"], **common))

    def plot(self, log_x: bool = False) -> go.Figure:
        """Loss, restricted and excluded loss, and each key mode's logit share over training."""
        return fourier_plots.progress_lines(self.progress.table, mode_table=self.modes.table,
                                    key_frequencies=self.key_frequencies, milestones=self.modes.milestones, log_x=log_x)

    def figures(self) -> dict[str, go.Figure]:
        return {**self.modes.figures(), **self.progress.figures(), "progress": self.plot()}


def _common_meta(meta: dict) -> dict:
    return {"key_frequencies": [int(k) for k in meta["key_frequencies"]], "p": int(meta["p"]), "op": meta["op"],
            "milestones": meta["milestones"]}


def _load_kind(directory: str | Path, kind: str):
    tables, arrays, meta = load_result(directory)
    if meta.get("kind") != kind:
        raise ValueError(f"{directory} holds a {meta.get('kind')!r} result, not {kind!r}; use fourier.load()")
    return tables, arrays, meta


# ------------------------------------------------------------------------------------------------- public


def mode_losses(
    run_or_model: Run | GrokTransformer, *, steps: Sequence[int] | None = None, progress: bool = False,
    op: str | None = None, dataset: Dataset | None = None, key_freqs: Sequence[int] | None = None,
    threshold: float = KEY_THRESHOLD, layer: int = -1,
) -> ModeLosses:
    """Per-mode restricted loss, excluded loss and logit share at every step, frequency and split.

    A single model is taken as `op` (default add) on all p² inputs; pass `dataset=` for train/test splits.
    `key_freqs` overrides the key frequencies (default: those of the final checkpoint, see `key_frequencies`).
    """
    ctx, steps, stats, milestones = _compute(run_or_model, steps, progress, op, dataset, key_freqs, threshold, layer)
    return ModeLosses(table=_mode_table(ctx, steps, stats), key_frequencies=ctx.key_freqs, p=ctx.p, op=ctx.op,
                      milestones=milestones)


def progress_measures(
    run_or_model: Run | GrokTransformer, *, steps: Sequence[int] | None = None, progress: bool = False,
    op: str | None = None, dataset: Dataset | None = None, key_freqs: Sequence[int] | None = None,
    threshold: float = KEY_THRESHOLD, layer: int = -1,
) -> ProgressMeasures:
    """Restricted loss, excluded loss, key share and Gini sparsity per step (Nanda et al. 2023)."""
    ctx, steps, stats, milestones = _compute(run_or_model, steps, progress, op, dataset, key_freqs, threshold, layer)
    table, frequencies = _progress_tables(ctx, steps, stats)
    return ProgressMeasures(table=table, frequencies=frequencies, key_frequencies=ctx.key_freqs, p=ctx.p, op=ctx.op,
                            threshold=threshold, milestones=milestones)


def analyze(
    run: Run | GrokTransformer, *, steps: Sequence[int] | None = None, progress: bool = False,
    key_freqs: Sequence[int] | None = None, threshold: float = KEY_THRESHOLD, **options,
) -> FourierAnalysis:
    """Mode losses and progress measures from one pass over the checkpoints (`interp-grok analyze --fourier`).

    options: op, dataset, layer (as in `mode_losses`)."""
    unknown = set(options) - {"op", "dataset", "layer"}
    if unknown:
        raise ValueError(f"unknown Fourier option(s) {sorted(unknown)}; expected steps, progress, key_freqs, "
                         f"threshold, op, dataset, layer")
    ctx, steps, stats, milestones = _compute(run, steps, progress, options.get("op"), options.get("dataset"),
                                             key_freqs, threshold, options.get("layer", -1))
    table, frequencies = _progress_tables(ctx, steps, stats)
    common = {"key_frequencies": ctx.key_freqs, "p": ctx.p, "op": ctx.op, "milestones": milestones}
    return FourierAnalysis(modes=ModeLosses(table=_mode_table(ctx, steps, stats), **common),
                           progress=ProgressMeasures(table=table, frequencies=frequencies, threshold=threshold, **common))


def load(directory: str | Path) -> FourierAnalysis | ModeLosses | ProgressMeasures:
    """Load any saved Fourier result (analyze, mode_losses or progress_measures)."""
    kinds = {"fourier": FourierAnalysis, "mode_losses": ModeLosses, "progress_measures": ProgressMeasures}
    _, _, meta = load_result(directory)
    if meta.get("kind") not in kinds:
        raise ValueError(f"{directory} holds a {meta.get('kind')!r} result, not a Fourier one")
    return kinds[meta["kind"]].load(directory)
