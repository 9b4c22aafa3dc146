"""Shared test helpers (test modules import them as ``from tests import gen``)."""

import torch


def gen(seed: int = 0) -> torch.Generator:
    """A fresh CPU generator: every random draw in a test is a function of its seed."""
    return torch.Generator().manual_seed(seed)
