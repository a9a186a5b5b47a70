"""mimlib: Multiple Input Mixup (MIM) for out-of-distribution detection, reproducibly.

The public API in a few names::

    from mimlib import multi_input_mixup, PostMixAugment, mim_finetune, ood_metrics, wrn40_2
"""

from .augment import PostMixAugment
from .data import load_id, load_ood
from .images import ImageSet, normalize
from .detectors import NEWER_DETECTORS, TABLE1_DETECTORS, FittedDetectors, extract
from .errors import (CheckpointError, ConfigError, DataError, DeviceMemoryError, MimlibError,
                     NonFiniteLossError)
from .metrics import ood_metrics
from .mixing import multi_input_mixup
from .models import (CifarResNet, DenseNet, ResNet18, SmallCNN, WideResNet, build_model,
                     input_normalization, set_normalization, wrn40_2)
from .train import mim_finetune, oe_finetune, pretrain
from .train_config import MIMConfig, OEConfig, PretrainConfig

__version__ = "0.1.0"

__all__ = [
    "PostMixAugment", "ImageSet", "load_id", "load_ood", "normalize", "TABLE1_DETECTORS", "NEWER_DETECTORS",
    "FittedDetectors", "extract", "CheckpointError", "ConfigError", "DataError",
    "DeviceMemoryError", "MimlibError", "NonFiniteLossError", "ood_metrics", "multi_input_mixup",
    "CifarResNet", "DenseNet", "ResNet18", "SmallCNN", "WideResNet", "build_model",
    "input_normalization", "set_normalization", "wrn40_2", "MIMConfig", "OEConfig",
    "PretrainConfig", "mim_finetune", "oe_finetune", "pretrain", "__version__",
]
