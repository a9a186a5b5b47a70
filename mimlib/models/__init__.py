"""Classifiers for 32x32 images, their published weights, and how mimlib reads any classifier.

- architectures: :mod:`.wrn` (the paper's WRN-40-2), :mod:`.resnet` (ResNet-18, CIFAR
  ResNet-20/32/44/56), :mod:`.densenet` (DenseNet-BC-100), :mod:`.small_cnn`;
- :mod:`.registry`: ``build_model`` by name and the published weights with URL, SHA-256,
  licence and normalisation;
- :mod:`.normalization`: the input statistics a model expects, carried by the model;
- :mod:`.heads`: penultimate features at the input of any classifier's linear head.
"""

from .densenet import DenseNet
from .heads import HEAD_NAMES, features_and_logits, find_linear_head, linear_head
from .normalization import (CIFAR, DICE_CIFAR10, IMAGENET, Normalization, input_normalization,
                            set_normalization)
from .registry import (ARCHITECTURE_NAMES, ARCHITECTURES, PUBLISHED, PublishedWeights,
                       architecture_display, build_model, paper_weights, published_oe_weights,
                       published_weights, weights_display)
from .resnet import CifarResNet, ResNet18
from .small_cnn import SmallCNN
from .wrn import WideResNet, wrn40_2

__all__ = ["DenseNet", "HEAD_NAMES", "features_and_logits", "find_linear_head", "linear_head",
           "CIFAR", "DICE_CIFAR10", "IMAGENET", "Normalization", "input_normalization",
           "set_normalization", "ARCHITECTURES", "PUBLISHED", "PublishedWeights", "build_model",
           "published_weights", "paper_weights", "published_oe_weights", "ARCHITECTURE_NAMES", "architecture_display", "weights_display",
           "CifarResNet", "ResNet18", "SmallCNN", "WideResNet", "wrn40_2"]
