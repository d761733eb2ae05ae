"""Loss and accuracy of a model on a task's inputs: shared by training and the analyses."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .model import GrokTransformer
from .tasks import Dataset


def cross_entropy(
    logits: Float[Tensor, "batch d_vocab_out"], labels: Int[Tensor, " batch"], dtype: torch.dtype = torch.float64
) -> Float[Tensor, ""]:
    """Mean cross-entropy with the log-softmax computed in `dtype` (float64 resolves losses near 1e-7)."""
    logprobs = logits.to(dtype).log_softmax(-1)
    return -logprobs.gather(-1, labels[:, None]).mean()


def per_input_loss(
    logits: Float[Tensor, "... batch d_vocab_out"], labels: Int[Tensor, " batch"], dtype: torch.dtype = torch.float64
) -> Float[Tensor, "... batch"]:
    """Cross-entropy of each input (any leading axes, e.g. steps or ablations), in `dtype`."""
    logprobs = logits.to(dtype).log_softmax(-1)
    index = labels[:, None].expand(*logits.shape[:-1], 1)
    return -logprobs.gather(-1, index).squeeze(-1)


def final_logits(model: GrokTransformer, inputs: Int[Tensor, "batch 3"], **kwargs) -> Float[Tensor, "batch d_vocab_out"]:
    """Logits at the `=` position; kwargs go to `model.run_with_hooks` (e.g. fwd_hooks=...)."""
    device = next(model.parameters()).device
    logits = model.run_with_hooks(inputs.to(device), final_only=True, **kwargs)
    return logits[:, -1]


@torch.no_grad()
def evaluate(
    model: GrokTransformer, dataset: Dataset, dtype: torch.dtype = torch.float64, **kwargs
) -> dict[str, float]:
    """train_loss, train_acc, test_loss, test_acc over the whole dataset in one forward pass."""
    logits = final_logits(model, dataset.inputs, **kwargs).cpu()
    losses = per_input_loss(logits, dataset.labels, dtype)
    correct = (logits.argmax(-1) == dataset.labels).double()
    out = {}
    for split in ("train", "test"):
        mask = dataset.split(split)
        out[f"{split}_loss"] = losses[mask].mean().item()
        out[f"{split}_acc"] = correct[mask].mean().item()
    return out
