"""How mimlib reads any classifier's penultimate features: at the input of its linear head.

Evaluation needs only the head: :func:`features_and_logits` runs a model once and takes the
features at its head's input, so other classifiers (torchvision's ResNets, VGG, EfficientNet...)
work too.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError

#: Where classifiers keep their last linear layer: mimlib's and torchvision's models,
#: and the CIFAR ResNets of kuangliu/pytorch-cifar (``linear``) that much OOD work starts from.
HEAD_NAMES = ("fc", "classifier", "head", "linear")


def find_linear_head(model: nn.Module) -> nn.Linear | None:
    """The classifier's last linear layer: an attribute named as in ``HEAD_NAMES``, or the last
    module of such an ``nn.Sequential``; None when there is none."""
    for name in HEAD_NAMES:
        head = getattr(model, name, None)
        if isinstance(head, nn.Sequential) and len(head):
            head = head[-1]
        if isinstance(head, nn.Linear):
            return head
    return None


def linear_head(model: nn.Module) -> nn.Linear:
    """:func:`find_linear_head`, or an error that says how to make the model usable."""
    head = find_linear_head(model)
    if head is None:
        raise ConfigError(
            f"{type(model).__name__} has no linear head: the detectors read the penultimate "
            f"features at the input of the last nn.Linear, looked up as an attribute named "
            f"{' / '.join(HEAD_NAMES)} (or the last layer of such an nn.Sequential). Name your "
            "last layer fc, or wrap the model in a module whose forward is fc(features(x)).")
    return head


def features_and_logits(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """Penultimate features (N, D), the linear head's input, and logits from one forward pass."""
    captured: list[Tensor] = []
    hook = linear_head(model).register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        logits = model(x)
    finally:
        hook.remove()
    if len(captured) != 1:
        raise ConfigError(f"the linear head of {type(model).__name__} ran {len(captured)} times "
                          "in one forward pass; expected once (features cannot be read)")
    return torch.flatten(captured[0], 1), logits
