"""Memorizing vs generalizing subnetworks of MLP neurons, and weight norms over training.

Merrill, Tsilivis & Shukla ("A Tale of Two Circuits") describe grokking as a competition between
a dense memorizing subnetwork and a sparse generalizing one whose few neurons grow in norm while
the rest decay; Liu et al. (Omnigrok) tie grokking to the total weight norm. This module tracks both.

Definitions (MLP of block 0, neurons n = 0..d_mlp-1; biases are not counted):
- neuron norm: ‖W_in[:, n]‖₂ (input), ‖W_out[n, :]‖₂ (output) and their combination
  sqrt(‖W_in[:, n]‖² + ‖W_out[n, :]‖²), the L2 norm of all the neuron's weights (`norm`).
- a subnetwork S's norm: the L2 norm of the W_in columns and W_out rows of its neurons,
  sqrt(Σ_{n∈S} norm_n²); its mean neuron norm: mean_{n∈S} norm_n.
- the model restricted to S: every neuron outside S is zeroed at `blocks.0.mlp.hook_post`
  (equivalently, the complement's W_out rows are ablated).
- generalizing subnetwork: the top-k neurons of a ranking at a reference step (select="norm": the
  combined neuron norm; "saliency": median |integrated gradient| over training inputs; "fourier": the
  fraction of the neuron's activation explained by its key frequency). k="auto" is
  the smallest k whose restricted model keeps the full model's training accuracy up to `tolerance`
  (default: at most one more training input wrong than the full model).
- memorizing subnetwork: memorizing="complement" (default) the other neurons; memorizing="memorization"
  the subnetwork the same rule selects at the memorization step (train accuracy ≥ 99%, nearest checkpoint).
- random subnetwork (control): as many neurons as the generalizing one, drawn from all neurons with a
  seeded `torch.Generator`.

```python
sub = subnetwork_norms(run, select="norm", reference_step="final", k="auto")
sub.generalizing, sub.memorizing, sub.table, sub.neuron_norms, sub.plot()
weight_norms(run).table       # step, parameter, l2 ("total" = all parameters; the embedding's Fourier split)
result = analyze(run); result.save(dir); load(dir)
```
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from .. import basis
from ..model import GrokTransformer
from ..run import Run
from ..tasks import Dataset
from . import ablation, fourier
from .ablation import ranking
from .results import load_result, save_result
from .trajectory import over_steps

HOOK = "blocks.0.mlp.hook_post"
W_IN, W_OUT = "blocks.0.mlp.W_in", "blocks.0.mlp.W_out"
SELECTIONS = ("norm", "saliency", "fourier")
MEMORIZING_RULES = ("complement", "memorization")
SUBNETWORKS = ("generalizing", "memorizing", "random")
SUBNETWORK_COLUMNS = ["step", "subnetwork", "n_neurons", "norm", "mean_neuron_norm", "masked_train_acc",
                      "masked_test_acc"]
NEURON_COLUMNS = ["step", "neuron", "norm_in", "norm_out", "norm"]
WEIGHT_COLUMNS = ["step", "parameter", "l2"]
MAX_BATCH = 1 << 16  # inputs × masks per forward pass
STEP_CHUNK = 32  # checkpoints stacked at once for the norms


# ----------------------------------------------------------------------------- pure math


class NeuronNorms(NamedTuple):
    """L2 norms per neuron, each [*batch, d_mlp]: input weights, output weights, both together."""

    norm_in: Tensor
    norm_out: Tensor
    norm: Tensor


def neuron_norms(
    W_in: Float[Tensor, "*batch d_model d_mlp"], W_out: Float[Tensor, "*batch d_mlp d_model"]
) -> NeuronNorms:
    """‖W_in[:, n]‖, ‖W_out[n, :]‖ and sqrt(‖W_in[:, n]‖² + ‖W_out[n, :]‖²) for every neuron n."""
    if W_in.shape[-1] != W_out.shape[-2]:
        raise ValueError(f"W_in {tuple(W_in.shape)} and W_out {tuple(W_out.shape)} disagree on d_mlp")
    norm_in = torch.linalg.vector_norm(W_in, dim=-2)
    norm_out = torch.linalg.vector_norm(W_out, dim=-1)
    return NeuronNorms(norm_in, norm_out, torch.hypot(norm_in, norm_out))


def subnetwork_norm(
    norm: Float[Tensor, "*batch d_mlp"], neurons: Int[Tensor, " k"]
) -> Float[Tensor, " *batch"]:
    """L2 norm of a subnetwork's weights from its neurons' combined norms: sqrt(Σ_{n∈S} norm_n²)."""
    return torch.linalg.vector_norm(norm[..., neurons], dim=-1)


def keep_mask(neurons: Int[Tensor, " k"], d_mlp: int) -> Bool[Tensor, " d_mlp"]:
    """True at the neurons of a subnetwork."""
    mask = torch.zeros(d_mlp, dtype=torch.bool)
    mask[neurons] = True
    return mask


# ----------------------------------------------------------------------------- masked models


@torch.no_grad()
def masked_logits(
    model: GrokTransformer, inputs: Int[Tensor, "batch 3"], keep: Bool[Tensor, "masks d_mlp"],
    broadcast: bool | None = None,
) -> Float[Tensor, "masks batch d_vocab_out"]:
    """Final logits with every neuron outside `keep[m]` zeroed at hook_post, for each mask m.

    All masks run batched, at most MAX_BATCH (mask, input) rows per pass. With `broadcast` (default
    for one-layer models) the hook adds a leading mask axis to hook_post and everything after it
    broadcasts over it, so the embedding and attention run once; otherwise the inputs are repeated
    once per mask.
    """
    d_mlp = model.cfg.d_mlp
    if keep.ndim != 2 or keep.shape[1] != d_mlp:
        raise ValueError(f"keep must be a [masks, d_mlp={d_mlp}] bool tensor, got shape {tuple(keep.shape)}")
    broadcast = model.cfg.n_layers == 1 if broadcast is None else broadcast
    if broadcast and model.cfg.n_layers != 1:
        raise ValueError(f"broadcast=True needs a one-layer model (this one has {model.cfg.n_layers}); leave it None")
    device = next(model.parameters()).device
    batch = len(inputs)
    out = []
    for chunk in keep.split(max(1, MAX_BATCH // max(batch, 1))):
        scale = chunk.to(device)[:, None, None, :]  # [chunk, 1, 1, d_mlp]

        def zero_outside(post: Tensor, hook, scale=scale) -> Tensor:
            scale = scale.to(post.dtype)
            if broadcast:  # [batch, pos, d_mlp] -> [chunk, batch, pos, d_mlp]
                return post * scale
            return (post.unflatten(0, (len(scale), batch)) * scale).flatten(0, 1)  # rows ordered (mask, input)

        tokens = inputs.to(device) if broadcast else inputs.to(device).repeat(len(chunk), 1)
        logits = model.run_with_hooks(tokens, final_only=True, fwd_hooks=[(HOOK, zero_outside)])[..., -1, :]
        out.append(logits.reshape(len(chunk), batch, -1).cpu())
    return torch.cat(out)


def masked_correct(
    model: GrokTransformer, dataset: Dataset, keep: Bool[Tensor, "masks d_mlp"], split: str = "all"
) -> Bool[Tensor, "masks n"]:
    """Whether each restricted model predicts each input of `split` correctly."""
    mask = dataset.split(split)
    logits = masked_logits(model, dataset.inputs[mask], keep)
    return logits.argmax(-1) == dataset.labels[mask]


def smallest_sufficient_k(
    model: GrokTransformer, dataset: Dataset, order: Int[Tensor, " d_mlp"], tolerance: float | None = None
) -> int:
    """The smallest k ≥ 1 whose top-k neurons of `order` keep the full model's train accuracy.

    "Keep" means at most `allowed` more training inputs wrong than the full model, with allowed =
    floor(tolerance · n_train), or 1 when tolerance is None. Binary search over k: the k returned
    passes and k - 1 fails (both evaluated; k = 1 needs no k - 1), so it is the smallest whenever
    passing is monotone in k.
    """
    d_mlp = model.cfg.d_mlp
    if sorted(order.tolist()) != list(range(d_mlp)):
        raise ValueError(f"order must be a permutation of the {d_mlp} neurons")
    if tolerance is not None and not 0 <= tolerance <= 1:
        raise ValueError(f"tolerance={tolerance!r} must be a train-accuracy drop in [0, 1], e.g. 0.005, or None")
    n_train = int(dataset.split("train").sum())
    allowed = 1 if tolerance is None else int(tolerance * n_train + 1e-9)
    full = int(masked_correct(model, dataset, torch.ones(1, d_mlp, dtype=torch.bool), "train").sum())

    def passes(k: int) -> bool:
        keep = keep_mask(order[:k], d_mlp)[None]
        return int(masked_correct(model, dataset, keep, "train").sum()) >= full - allowed

    lo, hi = 0, d_mlp  # invariant: hi passes (all neurons = the full model); lo fails or is 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if passes(mid) else (mid, hi)
    return hi


def neuron_scores(model: GrokTransformer, dataset: Dataset, select: str = "norm") -> Float[Tensor, " d_mlp"]:
    """The score each neuron is ranked by (higher = more likely generalizing).

    select="norm": the combined norm sqrt(‖W_in[:, n]‖² + ‖W_out[n, :]‖²);
    select="saliency": the median over training inputs of |IG attribution| of the correct logit to
    the neuron (`saliency.neuron_saliency`, block 0);
    select="fourier": the fraction of the neuron's activation variance explained by its dominant
    frequency (`fourier.neuron_frequencies`, block 0).
    """
    if select not in SELECTIONS:
        raise ValueError(f"select={select!r} is not supported; expected one of {', '.join(map(repr, SELECTIONS))}")
    if select in ("saliency", "fourier"):
        return ablation.neuron_scores(model, select, layer=0, dataset=dataset)[0]
    mlp = model.blocks[0].mlp
    return neuron_norms(mlp.W_in.detach().cpu(), mlp.W_out.detach().cpu()).norm


def select_subnetwork(
    model: GrokTransformer, dataset: Dataset, *, select: str = "norm", k: int | str = "auto",
    tolerance: float | None = None,
) -> tuple[Int[Tensor, " k"], Float[Tensor, " d_mlp"]]:
    """(the top-k neurons by `select`, sorted; every neuron's score). k="auto": `smallest_sufficient_k`."""
    scores = neuron_scores(model, dataset, select)
    order = ranking(scores)
    d_mlp = model.cfg.d_mlp
    if k == "auto":
        k = smallest_sufficient_k(model, dataset, order, tolerance)
    elif not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= d_mlp:
        raise ValueError(f"k={k!r} must be 'auto' or an integer in [1, d_mlp={d_mlp}]")
    return order[:k].sort().values, scores


# ----------------------------------------------------------------------------- results


def _check_columns(name: str, table: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{name} is missing columns {missing}; expected {columns}")


def _check_neurons(name: str, neurons: Tensor, d_mlp: int) -> None:
    if neurons.ndim != 1 or neurons.dtype != torch.long:
        raise ValueError(f"{name} must be a 1-D int64 tensor of neuron indices, "
                         f"got {neurons.dtype} {tuple(neurons.shape)}")
    if len(neurons) and (neurons.min() < 0 or neurons.max() >= d_mlp or not bool((neurons.diff() > 0).all())):
        raise ValueError(f"{name} must hold sorted distinct neuron indices in [0, {d_mlp})")


@dataclass
class SubnetworkResult:
    """Subnetworks chosen at a reference step, tracked over training.

    table:        step, subnetwork (generalizing|memorizing|random), n_neurons, norm (L2 of its W_in
                  columns and W_out rows), mean_neuron_norm, masked_train_acc, masked_test_acc (in [0, 1])
    neuron_norms: step, neuron, norm_in, norm_out, norm (L2 norms; norm = sqrt(norm_in² + norm_out²))
    generalizing, memorizing, random: [k] sorted neuron indices
    scores:       [d_mlp] the selection score of each neuron at the reference step
    meta:         select, k (requested), reference_step (checkpoint, -1 for a single model),
                  memorizing_rule, memorization_step, tolerance, seed, milestones
    A single model (no run) has step = -1 throughout.
    """

    table: pd.DataFrame
    neuron_norms: pd.DataFrame
    generalizing: Int[Tensor, " k"]
    memorizing: Int[Tensor, " m"]
    random: Int[Tensor, " k"]
    scores: Float[Tensor, " d_mlp"]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_columns("table", self.table, SUBNETWORK_COLUMNS)
        _check_columns("neuron_norms", self.neuron_norms, NEURON_COLUMNS)
        if self.scores.ndim != 1:
            raise ValueError(f"scores must be [d_mlp], got shape {tuple(self.scores.shape)}")
        for name in SUBNETWORKS:
            _check_neurons(name, getattr(self, name), len(self.scores))
        if len(self.random) != len(self.generalizing):
            raise ValueError(f"random has {len(self.random)} neurons, generalizing {len(self.generalizing)}")

    @property
    def milestones(self) -> dict[str, int | None]:
        return self.meta.get("milestones", {})

    def _parts(self) -> tuple[dict, dict, dict]:
        tables = {"subnetworks": self.table, "neuron_norms": self.neuron_norms}
        arrays = {name: getattr(self, name) for name in (*SUBNETWORKS, "scores")}
        return tables, arrays, {"subnetworks": self.meta}

    @classmethod
    def _from_parts(cls, tables: dict, arrays: dict, meta: dict) -> SubnetworkResult:
        return cls(tables["subnetworks"], tables["neuron_norms"], *(arrays[n] for n in (*SUBNETWORKS, "scores")),
                   meta=meta["subnetworks"])

    def save(self, directory: str | Path) -> Path:
        tables, arrays, meta = self._parts()
        return save_result(directory, tables=tables, arrays=arrays, meta=meta)

    @classmethod
    def load(cls, directory: str | Path) -> SubnetworkResult:
        return cls._from_parts(*load_result(directory))

    def plot(self, log_x: bool = False) -> go.Figure:
        """Norm and restricted-model accuracy of each subnetwork over training."""
        from ..plots import subnetworks as plots

        return plots.subnetwork_norms(self.table, self.milestones, log_x=log_x)

    def figures(self, log_x: bool = False) -> dict[str, go.Figure]:
        from ..plots import subnetworks as plots

        members = {name: getattr(self, name).tolist() for name in ("generalizing", "memorizing")}
        return {"subnetwork_norms": self.plot(log_x),
                "neuron_norms": plots.neuron_trajectories(self.neuron_norms, members, self.milestones, log_x=log_x)}


@dataclass
class WeightNormResult:
    """Weight norms over training (Omnigrok).

    table: step, parameter (a parameter name; "total" for all parameters together; "embed.W_E (key freqs)",
           "embed.W_E (other freqs)", "embed.W_E (= token)" for the embedding's Fourier split), l2 (L2 norm)
    meta:  milestones, key_frequencies (of the split); a single model has step = -1.
    """

    table: pd.DataFrame
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        _check_columns("table", self.table, WEIGHT_COLUMNS)

    @property
    def milestones(self) -> dict[str, int | None]:
        return self.meta.get("milestones", {})

    def _parts(self) -> tuple[dict, dict, dict]:
        return {"weight_norms": self.table}, {}, {"weight_norms": self.meta}

    @classmethod
    def _from_parts(cls, tables: dict, arrays: dict, meta: dict) -> WeightNormResult:
        return cls(tables["weight_norms"], meta=meta["weight_norms"])

    def save(self, directory: str | Path) -> Path:
        tables, _, meta = self._parts()
        return save_result(directory, tables=tables, meta=meta)

    @classmethod
    def load(cls, directory: str | Path) -> WeightNormResult:
        return cls._from_parts(*load_result(directory))

    def plot(self, log_x: bool = False) -> go.Figure:
        """Total and per-parameter L2 norms over training."""
        from ..plots import subnetworks as plots

        return plots.weight_norms(self.table, self.milestones, log_x=log_x)

    def figures(self, log_x: bool = False) -> dict[str, go.Figure]:
        return {"weight_norms": self.plot(log_x)}


@dataclass
class SubnetworkAnalysis:
    """What `analyze` returns: the subnetworks and the weight norms of one run."""

    subnetworks: SubnetworkResult
    weights: WeightNormResult

    def __post_init__(self):
        if not isinstance(self.subnetworks, SubnetworkResult) or not isinstance(self.weights, WeightNormResult):
            raise ValueError("SubnetworkAnalysis holds a SubnetworkResult and a WeightNormResult")

    @property
    def table(self) -> pd.DataFrame:
        """The subnetworks table (see SubnetworkResult)."""
        return self.subnetworks.table

    def save(self, directory: str | Path) -> Path:
        (t1, a1, m1), (t2, _, m2) = self.subnetworks._parts(), self.weights._parts()
        return save_result(directory, tables={**t1, **t2}, arrays=a1, meta={**m1, **m2})

    @classmethod
    def load(cls, directory: str | Path) -> SubnetworkAnalysis:
        parts = load_result(directory)
        return cls(SubnetworkResult._from_parts(*parts), WeightNormResult._from_parts(*parts))

    def plot(self, log_x: bool = False) -> go.Figure:
        return self.subnetworks.plot(log_x)

    def figures(self, log_x: bool = False) -> dict[str, go.Figure]:
        return {**self.subnetworks.figures(log_x), **self.weights.figures(log_x)}


def load(directory: str | Path) -> SubnetworkAnalysis:
    """A saved `analyze` result."""
    return SubnetworkAnalysis.load(directory)


# ----------------------------------------------------------------------------- analyses


def _stacked_chunks(run: Run, names: Sequence[str] | None, steps: list[int], progress: bool):
    """(steps, {name: [chunk, ...]}) over `steps` in chunks of STEP_CHUNK checkpoints."""
    chunks = [steps[i : i + STEP_CHUNK] for i in range(0, len(steps), STEP_CHUNK)]
    for chunk in tqdm(chunks, desc=f"{run.name} weights", disable=not progress):
        yield chunk, run.stacked(names, chunk)


def _neuron_norms_over(run_or_model: Run | GrokTransformer, steps: list[int] | None, progress: bool) -> NeuronNorms:
    """Neuron norms [n_steps, d_mlp] at every step (one row for a single model)."""
    if isinstance(run_or_model, GrokTransformer):
        mlp = run_or_model.blocks[0].mlp
        return neuron_norms(mlp.W_in.detach().cpu()[None], mlp.W_out.detach().cpu()[None])
    parts = [neuron_norms(w[W_IN], w[W_OUT]) for _, w in _stacked_chunks(run_or_model, [W_IN, W_OUT], steps, progress)]
    return NeuronNorms(*(torch.cat(norms) for norms in zip(*parts)))


def _neuron_table(steps: list[int], norms: NeuronNorms) -> pd.DataFrame:
    """step, neuron, norm_in, norm_out, norm: one row per step and neuron."""
    n_steps, d_mlp = norms.norm.shape
    return pd.DataFrame({
        "step": torch.tensor(steps).repeat_interleave(d_mlp).numpy(),
        "neuron": torch.arange(d_mlp).repeat(n_steps).numpy(),
        **{name: value.flatten().double().numpy() for name, value in norms._asdict().items()},
    })


def _nearest_checkpoint(run: Run, milestone: str) -> int:
    step = run.milestones.get(milestone)
    if step is None:
        raise ValueError(f"the run {run.name} never reached its {milestone} milestone (accuracy ≥ 99%); "
                         f"choose reference_step='final' or a checkpoint step")
    return min(run.steps, key=lambda s: (abs(s - step), s))


def _reference_step(run: Run, reference_step: int | str) -> int:
    if isinstance(reference_step, str) and reference_step in run.milestones:
        return _nearest_checkpoint(run, reference_step)
    return run.resolve_step(reference_step)


def subnetwork_norms(
    run_or_model: Run | GrokTransformer, *, steps: Sequence[int] | None = None, progress: bool = False,
    select: str = "norm", reference_step: int | str = "final", k: int | str = "auto",
    memorizing: str = "complement", tolerance: float | None = None, seed: int = 0, dataset: Dataset | None = None,
) -> SubnetworkResult:
    """Select the generalizing, memorizing and random subnetworks and track them over `steps`.

    reference_step: a checkpoint step, "final", or a milestone ("memorization", "grokking"; nearest
    checkpoint). k: "auto" (see `smallest_sufficient_k`, with `tolerance`) or a fixed size.
    memorizing: "complement" or "memorization" (the same rule applied at the memorization step).
    dataset: needed only for a single model (a run has its own).
    """
    if memorizing not in MEMORIZING_RULES:
        raise ValueError(f"memorizing={memorizing!r} is not supported; expected 'complement' or 'memorization'")
    if isinstance(run_or_model, Run):
        dataset = run_or_model.dataset
        ref = _reference_step(run_or_model, reference_step)
        reference, milestones = run_or_model.model(ref), run_or_model.milestones
        steps = run_or_model.resolve_steps(steps)
    elif isinstance(run_or_model, GrokTransformer):
        if dataset is None:
            raise ValueError("a single model needs dataset= (e.g. make_dataset(TaskConfig(op='add', p=113)))")
        if reference_step != "final" or memorizing != "complement":
            raise ValueError("a single model is its own reference: leave reference_step='final' and "
                             "memorizing='complement', or pass a Run")
        ref, reference, milestones = -1, run_or_model, {}
    else:
        raise TypeError(f"expected a Run or a GrokTransformer, got {type(run_or_model).__name__}")

    d_mlp = reference.cfg.d_mlp
    general, scores = select_subnetwork(reference, dataset, select=select, k=k, tolerance=tolerance)
    memorization_step = None
    if memorizing == "complement":
        memorizers = (~keep_mask(general, d_mlp)).nonzero().squeeze(1)
    else:
        memorization_step = _nearest_checkpoint(run_or_model, "memorization")
        memorizers, _ = select_subnetwork(run_or_model.model(memorization_step), dataset, select=select, k=k,
                                          tolerance=tolerance)
    generator = torch.Generator().manual_seed(seed)
    random = torch.randperm(d_mlp, generator=generator)[: len(general)].sort().values
    members = {"generalizing": general, "memorizing": memorizers, "random": random}

    norms = _neuron_norms_over(run_or_model, steps, progress)  # each [n_steps, d_mlp]
    keep = torch.stack([keep_mask(members[name], d_mlp) for name in SUBNETWORKS])  # [3, d_mlp]
    train = dataset.is_train

    def accuracies(model: GrokTransformer) -> Float[Tensor, "3 2"]:
        correct = masked_correct(model, dataset, keep).double()  # [3, n]
        return torch.stack([correct[:, train].mean(1), correct[:, ~train].mean(1)], dim=1)

    _, accs = over_steps(run_or_model, accuracies, steps=steps if isinstance(run_or_model, Run) else None,
                         progress=progress)
    accs = torch.stack(accs)  # [n_steps, 3, (train, test)]
    steps = steps if isinstance(run_or_model, Run) else [-1]
    frames = []
    for i, name in enumerate(SUBNETWORKS):
        neurons = members[name]
        frames.append(pd.DataFrame({
            "step": steps, "subnetwork": name, "n_neurons": len(neurons),
            "norm": subnetwork_norm(norms.norm.double(), neurons).numpy(),
            "mean_neuron_norm": norms.norm[:, neurons].double().mean(1).numpy(),
            "masked_train_acc": accs[:, i, 0].numpy(), "masked_test_acc": accs[:, i, 1].numpy()}))
    table = pd.concat(frames, ignore_index=True).sort_values(["step"], kind="stable").reset_index(drop=True)
    meta = {"select": select, "k": k, "reference_step": ref, "memorizing_rule": memorizing,
            "memorization_step": memorization_step, "tolerance": tolerance, "seed": seed,
            "milestones": milestones}
    return SubnetworkResult(table, _neuron_table(steps, norms), general, memorizers, random,
                            scores, meta)


def parameter_norms(params: dict[str, Float[Tensor, "steps ..."]]) -> dict[str, Float[Tensor, " steps"]]:
    """{name: L2 norm per step} for every parameter, plus "total": the L2 norm of all of them together."""
    norms = {name: torch.linalg.vector_norm(value.flatten(1).double(), dim=1) for name, value in params.items()}
    norms["total"] = torch.linalg.vector_norm(torch.stack(list(norms.values())), dim=0)
    return norms


def embedding_fourier_norms(
    W_E: Float[Tensor, "*batch d_vocab d_model"], key_frequencies: Sequence[int], p: int
) -> dict[str, Float[Tensor, " *batch"]]:
    """The embedding's L2 norm split three ways, whose squares sum to ‖W_E‖²:

    "key freqs": the Fourier components (along the token axis, tokens 0..p-1) of frequencies in
    `key_frequencies`; "other freqs": every other frequency, the constant included; "= token": row p.
    """
    bad = [k for k in key_frequencies if not 1 <= k <= basis.n_frequencies(p)]
    if bad:
        raise ValueError(f"key frequencies {bad} are out of range; expected 1..{basis.n_frequencies(p)} for p={p}")
    power = basis.frequency_power(W_E[..., :p, :].double().transpose(-1, -2)).sum(-2)  # [*batch, frequency 0..p//2]
    is_key = torch.zeros(power.shape[-1], dtype=torch.bool)
    is_key[list(key_frequencies)] = True
    return {"key freqs": power[..., is_key].sum(-1).sqrt(), "other freqs": power[..., ~is_key].sum(-1).sqrt(),
            "= token": torch.linalg.vector_norm(W_E[..., p, :].double(), dim=-1)}


def weight_norms(
    run_or_model: Run | GrokTransformer, *, steps: Sequence[int] | None = None, progress: bool = False,
    key_frequencies: Sequence[int] | None = None,
) -> WeightNormResult:
    """L2 norm of every parameter and of all parameters together ("total") at each step, and the
    embedding's split into key frequencies, other frequencies and the `=` row (`embedding_fourier_norms`,
    parameters "embed.W_E (key freqs)", "embed.W_E (other freqs)", "embed.W_E (= token)"; not in the total).

    key_frequencies: default `fourier.key_frequencies` of the final checkpoint (or of the single model).
    """
    if isinstance(run_or_model, GrokTransformer):
        chunks = [([-1], {n: p.detach().cpu()[None] for n, p in run_or_model.named_parameters()})]
        milestones, final, p = {}, run_or_model, run_or_model.d_vocab_out
    elif isinstance(run_or_model, Run):
        chunks = _stacked_chunks(run_or_model, None, run_or_model.resolve_steps(steps), progress)
        milestones, p = run_or_model.milestones, run_or_model.config.task.p
        final = run_or_model.model("final") if key_frequencies is None else None
    else:
        raise TypeError(f"expected a Run or a GrokTransformer, got {type(run_or_model).__name__}")
    keys = sorted(int(k) for k in (fourier.key_frequencies(final) if key_frequencies is None else key_frequencies))
    frames = []
    for chunk, params in chunks:
        split = embedding_fourier_norms(params["embed.W_E"], keys, p)
        norms = {**parameter_norms(params), **{f"embed.W_E ({part})": l2 for part, l2 in split.items()}}
        for name, l2 in norms.items():
            frames.append(pd.DataFrame({"step": chunk, "parameter": name, "l2": l2.numpy()}))
    table = pd.concat(frames, ignore_index=True).sort_values(["step", "parameter"], kind="stable")
    return WeightNormResult(table.reset_index(drop=True), meta={"milestones": milestones, "key_frequencies": keys})


def analyze(
    run: Run, *, steps: Sequence[int] | None = None, progress: bool = False, select: str = "norm",
    reference_step: int | str = "final", k: int | str = "auto", memorizing: str = "complement",
    tolerance: float | None = None, seed: int = 0,
) -> SubnetworkAnalysis:
    """`interp-grok analyze RUN --subnetworks`: subnetwork norms and weight norms over training."""
    sub = subnetwork_norms(run, steps=steps, progress=progress, select=select, reference_step=reference_step, k=k,
                           memorizing=memorizing, tolerance=tolerance, seed=seed)
    return SubnetworkAnalysis(sub, weight_norms(run, steps=steps, progress=progress))
