"""Top-k neuron ablation: delete the k highest-ranked MLP neurons at each checkpoint and measure the damage.

The hypothesis ("SGD prefers general circuits"): as the general (Fourier) circuit forms, the most
salient neurons carry more and more of the answer, so deleting the top k hurts more and more,
while deleting k random neurons (the control, several seeded draws) or the k least salient hurts
little.

```python
abl = ablation.topk_ablation(run, ks=[1, 4, 16, 64], mode="zero", rank_by="norm", random_draws=5)
abl.table   # step, k, selection (top|random|bottom), draw, split (train|test), loss, acc, loss_increase, acc_drop
abl.plot()
```

Ablation sets `blocks.{layer}.mlp.hook_post` of the chosen neurons to a replacement (0, or the
neuron's mean activation over every input of the task) on all inputs. Fast path: when the layer
is the last one and no LayerNorm follows it, the logits are linear in hook_post, so

    logits_ablated = logits - (post - replacement)[:, neurons] @ (W_out @ W_U)[neurons]

from one clean forward pass per checkpoint; otherwise each neuron set gets a hooked forward pass.
Top-k, random-k and bottom-k are prefixes of three orderings of the neurons, so the sets for
increasing k are nested and each neuron's term is subtracted once (`NeuronAblation.prefix_metrics`).
Losses use a cancellation-free float32 cross-entropy (`cross_entropy_and_correct`).

Rankings (`rank_by`, scores per neuron, higher = more important):
- "saliency": median |integrated gradient| of the correct logit over the training inputs
  (`saliency.neuron_saliency`; a saved `analyses/<run>/saliency/` is reused when it covers the steps);
- "norm": ||W_in[:, n]|| * ||W_out[n, :]||, the product of the neuron's input and output weight
  norms (how strongly it can read from and write to the residual stream; needs no data);
- "fourier": the `fraction` of `fourier.neuron_frequencies`: the share of the neuron's activation
  variance over all inputs explained by the Fourier terms of its dominant frequency.
The random control draws `random_draws` seeded permutations once; random-k of draw r is the first k
of permutation r at every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..model import GrokTransformer
from ..run import Run
from ..tasks import Dataset
from .results import load_result, result_dir, save_result
from .trajectory import over_steps

logger = logging.getLogger(__name__)

MODES = ("zero", "mean")
RANKINGS = ("saliency", "norm", "fourier")
SELECTIONS = ("top", "random", "bottom")
SPLITS = ("train", "test")
TABLE_COLUMNS = ["step", "k", "selection", "draw", "split", "loss", "acc", "loss_increase", "acc_drop"]
CLEAN_COLUMNS = ["step", "split", "loss", "acc"]
DEFAULT_KS = (1, 2, 4, 8, 16, 32, 64)
MAX_CHUNK_ELEMENTS = 2**24  # ablated logits per buffer: orderings * inputs * vocab (64 MB in float32)


# ---------------------------------------------------------------------------------------------
# Pure math: tensors in, tensors out.


def neuron_norms(
    W_in: Float[Tensor, "... d_model d_mlp"], W_out: Float[Tensor, "... d_mlp d_model"]
) -> Float[Tensor, "... d_mlp"]:
    """||W_in[:, n]|| * ||W_out[n, :]|| for every neuron n (leading axes, e.g. steps, kept)."""
    return W_in.norm(dim=-2) * W_out.norm(dim=-1)


def ranking(scores: Float[Tensor, " d_mlp"]) -> Int[Tensor, " d_mlp"]:
    """Neuron ids from the highest score to the lowest (ties: lower id first)."""
    return torch.sort(-scores, stable=True).indices


def random_rankings(d_mlp: int, draws: int, seed: int) -> Int[Tensor, "draws d_mlp"]:
    """`draws` seeded random permutations of the neurons; random-k of draw r is row r's first k.

    The same sets serve every step and every k (nested like top-k), so the control does not depend
    on which steps or ks are asked for.
    """
    generator = torch.Generator().manual_seed(seed)
    if draws == 0:
        return torch.empty(0, d_mlp, dtype=torch.long)
    return torch.stack([torch.randperm(d_mlp, generator=generator) for _ in range(draws)])


def ablated_logits(
    logits: Float[Tensor, "batch vocab"],
    delta: Float[Tensor, "d_mlp batch"],
    neurons: Int[Tensor, "sets k"],
    W_OU: Float[Tensor, "d_mlp vocab"],
) -> Float[Tensor, "sets batch vocab"]:
    """Logits with each set's neurons replaced, for a model whose logits are linear in hook_post.

    delta = (post - replacement).T, how far ablation moves each activation (neuron-major, so a set's
    rows gather contiguously); W_OU = W_out @ W_U (no LayerNorm after the MLP). Returns
    logits - delta[set].T @ W_OU[set]: batch * k * vocab per set, not a forward pass.
    """
    return torch.baddbmm(logits.expand(len(neurons), -1, -1), delta[neurons].transpose(1, 2), W_OU[neurons], alpha=-1)


def cross_entropy_and_correct(
    logits: Float[Tensor, "sets batch vocab"], labels: Int[Tensor, " batch"],
    scratch: Float[Tensor, "sets batch vocab"] | None = None,
) -> tuple[Float[Tensor, "sets batch"], Bool[Tensor, "sets batch"]]:
    """Per-input cross-entropy and whether the label's logit is strictly the largest (a tie counts as wrong).

    The loss is softplus(logsumexp over c != label of (logit_c - logit_label)): no cancellation, so
    float32 resolves losses near 1e-7 as the float64 log-softmax does, at a fraction of the cost.
    `scratch` (same shape as logits, overwritten) saves allocating the margins.
    """
    index = labels[:, None].expand(*logits.shape[:-1], 1)
    margins = torch.sub(logits, logits.gather(-1, index), out=scratch).scatter_(-1, index, float("-inf"))
    largest = margins.amax(-1, keepdim=True)
    lse = largest + margins.sub_(largest).exp_().sum(-1, keepdim=True).log_()
    return F.softplus(lse.squeeze(-1)), largest.squeeze(-1) < 0


def split_means(
    values: Float[Tensor, "sets batch"], masks: Float[Tensor, "batch splits"]
) -> Float[Tensor, "sets splits"]:
    """Mean of each row over each split's inputs (masks: 0/1 columns), summed in float64 then divided,
    so that accuracies are exact fractions."""
    return (values.double() @ masks) / masks.sum(0)


# ---------------------------------------------------------------------------------------------
# Ablating one model.


class NeuronAblation:
    """Ablate sets of MLP neurons of one model on fixed inputs: one clean pass, then any number of sets.

    ```python
    abl = NeuronAblation(model, dataset.inputs, mode="mean")
    abl.logits(torch.tensor([[3, 7], [1, 2]]))   # [2 sets, batch, vocab]
    ```
    `linear` says whether the fast path applies (the ablated layer is the last block and the model
    has no LayerNorm); `hooked_logits` always uses real hooked forward passes. Mean ablation
    replaces a neuron by its mean activation over `inputs` (at each position).
    """

    def __init__(self, model: GrokTransformer, inputs: Int[Tensor, "batch 3"], *, mode: str = "zero", layer: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not supported; expected 'zero' or 'mean'")
        n_layers = model.cfg.n_layers
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer={layer!r} is out of range for a model with {n_layers} block(s)")
        self.model, self.mode, self.layer = model, mode, layer
        self.hook_name = f"blocks.{layer}.mlp.hook_post"
        self.inputs = inputs.to(next(model.parameters()).device)
        self.d_mlp = model.cfg.d_mlp
        self.linear = layer == n_layers - 1 and model.cfg.normalization is None
        with torch.no_grad():
            logits, cache = model.run_with_cache(self.inputs, final_only=True, names_filter=self.hook_name)
        post = cache[self.hook_name]  # [batch, pos, d_mlp]; pos = 1 in the last block
        self.clean_logits: Float[Tensor, "batch vocab"] = logits[:, -1]
        # [pos, d_mlp]: the replacement value of every neuron at every position
        self.replacement = post.mean(0) if mode == "mean" else torch.zeros_like(post[0])
        if self.linear:
            self.delta = (post[:, -1] - self.replacement[-1]).T.contiguous()  # [d_mlp, batch]
            self.W_OU = model.blocks[layer].mlp.W_out.detach() @ model.unembed.W_U.detach()  # [d_mlp, vocab]

    def _check(self, neurons: Tensor) -> Tensor:
        neurons = torch.as_tensor(neurons, dtype=torch.long, device=self.clean_logits.device)
        if neurons.ndim != 2:
            raise ValueError(f"neurons must be [sets, k] neuron ids, got shape {tuple(neurons.shape)}")
        if neurons.numel() and (neurons.min() < 0 or neurons.max() >= self.d_mlp):
            raise ValueError(f"neuron ids must be in [0, {self.d_mlp}), got {neurons.min()}..{neurons.max()}")
        return neurons

    @torch.no_grad()
    def logits(self, neurons: Int[Tensor, "sets k"]) -> Float[Tensor, "sets batch vocab"]:
        """Final-position logits with each set of neurons ablated (fast path when `linear`)."""
        neurons = self._check(neurons)
        if not self.linear:
            return self.hooked_logits(neurons)
        return ablated_logits(self.clean_logits, self.delta, neurons, self.W_OU)

    @torch.no_grad()
    def hooked_logits(self, neurons: Int[Tensor, "sets k"]) -> Float[Tensor, "sets batch vocab"]:
        """The same through one hooked forward pass per set (the reference the fast path is tested against)."""
        neurons = self._check(neurons)
        out = []
        for row in neurons:
            mask = torch.zeros(self.d_mlp, dtype=torch.bool, device=row.device)
            mask[row] = True

            def ablate(act: Tensor, hook, mask=mask) -> Tensor:
                return torch.where(mask, self.replacement, act)  # [batch, pos, d_mlp]

            logits = self.model.run_with_hooks(self.inputs, final_only=True, fwd_hooks=[(self.hook_name, ablate)])
            out.append(logits[:, -1])
        return torch.stack(out) if out else self.clean_logits.new_empty(0, *self.clean_logits.shape)

    @torch.no_grad()
    def prefix_metrics(
        self, orders: Int[Tensor, "orders d_mlp"], ks: Sequence[int], labels: Int[Tensor, " batch"],
        masks: Sequence[Bool[Tensor, " batch"]],
    ) -> tuple[Float[Tensor, "orders ks splits"], Float[Tensor, "orders ks splits"]]:
        """(mean loss, accuracy), float64 on the CPU, of ablating the first k neurons of each ordering,
        for every k in `ks` (ascending), per input mask.

        Fast path: the sets are nested, so each neuron's contribution is subtracted once from a running
        copy of the logits ([orders, batch, vocab], in chunks of orders that bound memory).
        """
        orders = self._check(orders)
        ks = list(ks)
        if ks != sorted(ks) or (ks and not 0 <= ks[0] <= ks[-1] <= orders.shape[1]):
            raise ValueError(f"ks={ks} must be ascending and between 0 and the ordering length {orders.shape[1]}")
        labels = labels.to(self.clean_logits.device)
        columns = torch.stack(list(masks), dim=-1).to(self.clean_logits.device, torch.float64)  # [batch, splits]
        loss = torch.empty(len(orders), len(ks), len(masks), dtype=torch.float64)
        acc = torch.empty_like(loss)

        def record(logits: Tensor, rows: slice, i: int, scratch: Tensor | None = None) -> None:
            l, correct = cross_entropy_and_correct(logits, labels, scratch)
            loss[rows, i], acc[rows, i] = split_means(l, columns).cpu(), split_means(correct, columns).cpu()

        if not self.linear:
            for i, k in enumerate(ks):
                record(self.hooked_logits(orders[:, :k]), slice(None), i)
            return loss, acc
        chunk = max(1, MAX_CHUNK_ELEMENTS // self.clean_logits.numel())
        for start in range(0, len(orders), chunk):
            part, rows = orders[start : start + chunk], slice(start, start + chunk)
            running = self.clean_logits.expand(len(part), -1, -1).clone()  # [orders, batch, vocab]
            scratch, done = torch.empty_like(running), 0
            for i, k in enumerate(ks):
                new = part[:, done:k]
                running.baddbmm_(self.delta[new].transpose(1, 2), self.W_OU[new], alpha=-1)
                record(running, rows, i, scratch)
                done = k
        return loss, acc

    def clean_metrics(
        self, labels: Int[Tensor, " batch"], masks: Sequence[Bool[Tensor, " batch"]]
    ) -> tuple[Float[Tensor, " splits"], Float[Tensor, " splits"]]:
        """(mean loss, accuracy) of the unablated model per input mask."""
        loss, acc = self.prefix_metrics(torch.empty(1, 0, dtype=torch.long), [0], labels, masks)
        return loss[0, 0], acc[0, 0]


# ---------------------------------------------------------------------------------------------
# Rankings: [n_steps, d_mlp] scores (n_steps = 1 for a single model), higher = more important.


def _norm_scores(run_or_model, steps, layer, progress, dataset) -> Tensor:
    names = [f"blocks.{layer}.mlp.W_in", f"blocks.{layer}.mlp.W_out"]
    if isinstance(run_or_model, GrokTransformer):
        params = dict(run_or_model.named_parameters())
        return neuron_norms(params[names[0]].detach(), params[names[1]].detach()).cpu()[None]
    stacked = run_or_model.stacked(names, steps)
    return neuron_norms(stacked[names[0]], stacked[names[1]])


def _saliency_scores(run_or_model, steps, layer, progress, dataset) -> Tensor:
    """Median |IG| over the training inputs; a run's saved `analyses/<run>/saliency/` is reused when it
    covers the layer, the training split and the steps."""
    from . import saliency

    if isinstance(run_or_model, Run):
        saved = result_dir(run_or_model, saliency.NAME)
        if (saved / "meta.json").exists():
            result = saliency.load(saved)
            if result.layer == layer and "train" in result.splits and set(steps) <= set(result.steps):
                logger.info("ranking by the saved saliency in %s", saved)
                rows = [result.steps.index(s) for s in steps]
                return result.median_abs[rows, result.splits.index("train")]
            logger.info("saved saliency in %s lacks layer %d, the train split or some steps; computing it",
                        saved, layer)
    result = saliency.neuron_saliency(run_or_model, steps=steps, progress=progress, split="train", layer=layer,
                                      keep_per_input=False, dataset=dataset)
    return result.median_abs[:, 0]


def _fourier_scores(run_or_model, steps, layer, progress, dataset) -> Tensor:
    from . import fourier

    _, fractions = over_steps(run_or_model, lambda model: fourier.neuron_frequencies(model, layer=layer)[1],
                              steps=steps, progress=progress)
    return torch.stack(fractions)


# (run_or_model, steps or None, layer, progress, dataset or None) -> [n_steps, d_mlp]
_SCORERS: dict[str, Callable[..., Tensor]] = {
    "saliency": _saliency_scores, "norm": _norm_scores, "fourier": _fourier_scores,
}


def neuron_scores(
    run_or_model: Run | GrokTransformer, rank_by: str = "saliency", *, steps: Sequence[int] | None = None,
    progress: bool = False, layer: int = 0, dataset: Dataset | None = None,
) -> Float[Tensor, "n_steps d_mlp"]:
    """Importance of every neuron of block `layer` at each step (one row for a single model) by `rank_by`;
    `dataset` is needed for rank_by="saliency" on a single model."""
    if rank_by not in RANKINGS:
        raise ValueError(f"rank_by={rank_by!r} is not supported; expected one of {', '.join(map(repr, RANKINGS))}")
    if isinstance(run_or_model, Run):
        steps = run_or_model.resolve_steps(steps)
    elif steps is not None:
        raise ValueError("steps= only applies to a Run; a single model has no steps")
    return _SCORERS[rank_by](run_or_model, steps, layer, progress, dataset).double().cpu()


# ---------------------------------------------------------------------------------------------
# The result.


@dataclass
class AblationResult:
    """Top-k, random-k and bottom-k ablations over training.

    table:  one row per step x k x selection x draw x split: loss (mean cross-entropy, nats), acc
            (fraction correct), loss_increase = loss - clean loss, acc_drop = clean acc - acc (at the
            same step). selection: top | random | bottom; draw: 0..random_draws-1 for random, 0 else.
            step = -1 for a single model.
    clean:  step, split, loss, acc of the unablated model.
    scores: [n_ranked, d_mlp] the ranking scores: one row per step ("per-step"), or the reference
            step's single row (fixed set).
    meta:   the options (ks, mode, rank_by, reference, random_draws, seed, bottom, layer, steps,
            scored_steps) and the run's milestones.
    """

    table: pd.DataFrame
    clean: pd.DataFrame
    scores: Float[Tensor, "n_ranked d_mlp"]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        for name, columns in (("table", TABLE_COLUMNS), ("clean", CLEAN_COLUMNS)):
            missing = [c for c in columns if c not in getattr(self, name).columns]
            if missing:
                raise ValueError(f"AblationResult.{name} lacks columns {missing}; expected {columns}")
        bad = set(self.table["selection"]) - set(SELECTIONS)
        if bad:
            raise ValueError(f"AblationResult.table has unknown selections {sorted(bad)}; expected {SELECTIONS}")
        if self.scores.ndim != 2:
            raise ValueError(f"AblationResult.scores must be [n_ranked, d_mlp], got shape {tuple(self.scores.shape)}")

    @property
    def milestones(self) -> dict[str, int | None]:
        return self.meta.get("milestones", {})

    def save(self, directory: str | Path) -> Path:
        return save_result(directory, tables={"table": self.table, "clean": self.clean},
                           arrays={"scores": self.scores.contiguous()}, meta={"analysis": "ablation", **self.meta})

    @classmethod
    def load(cls, directory: str | Path) -> AblationResult:
        tables, arrays, meta = load_result(directory)
        meta.pop("analysis", None)
        return cls(table=tables["table"], clean=tables["clean"], scores=arrays["scores"], meta=meta)

    def plot(self, split: str = "test", log_x: bool = False) -> go.Figure:
        """Loss increase against step per k, top-k against the random band (damage vs k for one model)."""
        from ..plots import ablation as plots

        if (self.table["step"] < 0).all():
            return plots.damage_vs_k(self.table, split=split)
        return plots.damage_vs_step(self.table, self.milestones, split=split, log_x=log_x)

    def figures(self) -> dict[str, go.Figure]:
        """damage_vs_step (test and train), acc_drop_vs_step, damage_vs_k (one model: damage_vs_k per split)."""
        from ..plots import ablation as plots

        if (self.table["step"] < 0).all():
            return {f"damage_vs_k_{s}": plots.damage_vs_k(self.table, split=s) for s in SPLITS}
        return {
            "damage_vs_step": plots.damage_vs_step(self.table, self.milestones, split="test"),
            "damage_vs_step_train": plots.damage_vs_step(self.table, self.milestones, split="train"),
            "acc_drop_vs_step": plots.damage_vs_step(self.table, self.milestones, metric="acc_drop", split="test"),
            "damage_vs_k": plots.damage_vs_k(self.table, milestones=self.milestones, split="test"),
        }


# ---------------------------------------------------------------------------------------------
# The analysis.


def _check_ks(ks: Sequence[int], d_mlp: int) -> list[int]:
    ks = [int(k) for k in ks]
    if not ks:
        raise ValueError("ks is empty; give at least one number of neurons to ablate, e.g. ks=[1, 4, 16]")
    bad = [k for k in ks if not 1 <= k <= d_mlp]
    if bad:
        raise ValueError(f"ks={ks} includes {bad}: each k must be between 1 and d_mlp={d_mlp} (the model's neurons)")
    return sorted(set(ks))


def _orderings(order: Tensor, random_orders: Tensor, bottom: bool) -> tuple[Tensor, list[tuple[str, int]]]:
    """[orderings, d_mlp]: top-first, each random draw, bottom-first; with (selection, draw) labels."""
    rows = [order, *random_orders] + ([order.flip(0)] if bottom else [])
    labels = [("top", 0), *(("random", r) for r in range(len(random_orders)))] + ([("bottom", 0)] if bottom else [])
    return torch.stack(rows), labels


def topk_ablation(
    run_or_model: Run | GrokTransformer,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    mode: str = "zero",
    rank_by: str = "saliency",
    random_draws: int = 5,
    seed: int = 0,
    reference: str | int = "per-step",
    bottom: bool = True,
    layer: int = 0,
    steps: Sequence[int] | None = None,
    progress: bool = False,
    dataset: Dataset | None = None,
) -> AblationResult:
    """Ablate the top-k neurons (by `rank_by`), k random ones (`random_draws` seeded draws) and the
    bottom k, for every k and step; loss and accuracy on train and test against the clean model.

    reference: "per-step" ranks the neurons at each step; "final" or a step number ablates the
    fixed top-k (and bottom-k) set of that step at every step. A Run is evaluated on its own
    dataset and split; a single model needs `dataset=` (e.g. `make_dataset(task_config)`).
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not supported; expected 'zero' or 'mean'")
    if random_draws < 0:
        raise ValueError(f"random_draws={random_draws!r} must be >= 0")
    is_run = isinstance(run_or_model, Run)
    if not is_run and not isinstance(run_or_model, GrokTransformer):
        raise TypeError(f"expected a Run or a GrokTransformer, got {type(run_or_model).__name__}")
    if is_run:
        dataset = run_or_model.dataset if dataset is None else dataset
        steps = run_or_model.resolve_steps(steps)
        d_mlp = run_or_model.config.model.d_mlp
    else:
        if dataset is None:
            raise ValueError("a single model needs dataset= (e.g. make_dataset(task_config)) to evaluate on")
        if reference != "per-step":
            raise ValueError(f"reference={reference!r} only applies to a Run; a single model uses reference='per-step'")
        d_mlp = run_or_model.cfg.d_mlp
    ks = _check_ks(ks, d_mlp)

    if reference == "per-step":
        scored_steps = steps
        scores = neuron_scores(run_or_model, rank_by, steps=steps, progress=progress, layer=layer, dataset=dataset)
        orders = [ranking(s) for s in scores]
    else:
        scored_steps = [_resolve_reference(run_or_model, reference)]
        scores = neuron_scores(run_or_model, rank_by, steps=scored_steps, progress=progress, layer=layer,
                              dataset=dataset)
        orders = [ranking(scores[0])] * len(steps)
    random_orders = random_rankings(d_mlp, random_draws, seed)
    masks = [dataset.split(s) for s in SPLITS]
    order_iter = iter(orders)

    def ablate(model: GrokTransformer) -> tuple[Tensor, Tensor, Tensor, Tensor, list[tuple[str, int]]]:
        orderings, labels = _orderings(next(order_iter), random_orders, bottom)
        abl = NeuronAblation(model, dataset.inputs, mode=mode, layer=layer)
        clean_loss, clean_acc = abl.clean_metrics(dataset.labels, masks)
        loss, acc = abl.prefix_metrics(orderings, ks, dataset.labels, masks)
        return clean_loss, clean_acc, loss, acc, labels

    done_steps, per_step = over_steps(run_or_model, ablate, steps=steps if is_run else None, progress=progress)
    table, clean = _tables(done_steps or [-1], ks, per_step)
    meta = {"ks": ks, "mode": mode, "rank_by": rank_by, "reference": reference if reference == "per-step"
            else scored_steps[0], "random_draws": random_draws, "seed": seed, "bottom": bottom, "layer": layer,
            "steps": done_steps, "scored_steps": scored_steps,
            "milestones": run_or_model.milestones if is_run else {}}
    return AblationResult(table=table, clean=clean, scores=scores.float(), meta=meta)


def _resolve_reference(run: Run, reference: str | int) -> int:
    if isinstance(reference, str) and reference not in ("final", "last") and not reference.isdigit():
        raise ValueError(f"reference={reference!r} is not supported; expected 'per-step', 'final' or a step number")
    return run.resolve_step(reference)


def _tables(steps: list[int], ks: list[int], per_step: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows ordered by step, k, selection (top, random draws, bottom), split."""
    rows, clean_rows = [], []
    for step, (clean_loss, clean_acc, loss, acc, labels) in zip(steps, per_step):
        clean_loss, clean_acc, loss, acc = (t.tolist() for t in (clean_loss, clean_acc, loss, acc))
        clean_rows.extend((step, split, clean_loss[j], clean_acc[j]) for j, split in enumerate(SPLITS))
        for i, k in enumerate(ks):
            for r, (selection, draw) in enumerate(labels):
                for j, split in enumerate(SPLITS):
                    l, a = loss[r][i][j], acc[r][i][j]
                    rows.append((step, k, selection, draw, split, l, a, l - clean_loss[j], clean_acc[j] - a))
    return pd.DataFrame(rows, columns=TABLE_COLUMNS), pd.DataFrame(clean_rows, columns=CLEAN_COLUMNS)


def analyze(
    run: Run, *, steps: Sequence[int] | None = None, progress: bool = False, ks: Sequence[int] = DEFAULT_KS,
    mode: str = "zero", rank_by: str = "saliency", random_draws: int = 5, seed: int = 0,
    reference: str | int = "per-step",
) -> AblationResult:
    """What `interp-grok analyze RUN --ablation` runs: `topk_ablation` over the run's checkpoints."""
    return topk_ablation(run, ks=ks, mode=mode, rank_by=rank_by, random_draws=random_draws, seed=seed,
                         reference=reference, steps=steps, progress=progress)


def load(directory: str | Path) -> AblationResult:
    return AblationResult.load(directory)
