"""Shared fixtures: tiny configs and a tiny trained run (written once per test session)."""

import os

import pytest
import torch
from hypothesis import settings

from interp_grok import Run, preset, train

torch.set_num_threads(2)
# CI explores the same examples every run (a red build then means a change broke something); locally
# hypothesis keeps exploring new ones.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_config():
    """add mod 13, d_model 32, 200 steps: memorizes in about a second."""
    return preset("tiny")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_config) -> Run:
    """A finished tiny run on disk (treat as read-only)."""
    return train(tiny_config, tmp_path_factory.mktemp("runs") / "tiny", progress=False)


@pytest.fixture(scope="session")
def grokked_run(tmp_path_factory) -> Run:
    """add mod 23, 70% train: memorizes by step ~50, test acc 1.0 by ~110 (4 s); 21 checkpoints."""
    config = preset("tiny").with_overrides(p=23, frac_train=0.7, d_model=64, n_heads=4, d_head=16, d_mlp=128,
                                           steps=400, lr=1e-2, weight_decay=2.0, eval_every=20,
                                           checkpoint_every=25, checkpoint_early=4, loss_dtype="float64")
    return train(config, tmp_path_factory.mktemp("runs") / "grok23", progress=False)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models train fastest on one thread (and far faster than on two when other jobs share the cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
