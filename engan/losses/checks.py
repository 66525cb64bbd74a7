"""Argument checks shared by the loss functions."""
from __future__ import annotations

import torch


def check_rgb_pair(loss_name: str, output: torch.Tensor, reference: torch.Tensor) -> None:
    """Raise ValueError unless ``output`` and ``reference`` are NCHW RGB batches of one shape."""
    if output.shape != reference.shape or output.dim() != 4 or output.shape[1] != 3:
        raise ValueError(f"{loss_name} needs two NCHW RGB batches of one shape, got "
                         f"{tuple(output.shape)} and {tuple(reference.shape)}")
