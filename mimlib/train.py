"""Training loops: MIM fine-tuning, Outlier Exposure fine-tuning and OE-recipe pretraining.

All three are one loop over ID batches held on the device as uint8. When an outlier source is
given, each step forwards the ID batch and the outlier batch together (one forward pass, as the
OE code does) and minimises

    CE(f(x_id), y) + lam * CE(f(x_out), uniform),

where CE towards the uniform distribution is ``-mean_c log softmax(f(x))_c`` (identical to OE's
``-(x.mean(1) - logsumexp(x, 1))``). MIM's outliers are post-mix-augmented multi-input mixes of
the ID batch; OE's are a batch of an auxiliary image set; pretraining has none.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from typing import Any, Callable, Iterator, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .images import ImageSet
from .device import (autocast, in_layout, out_of_memory_as_error, resolve_device, resolve_layout,
                     resolve_precision, seed_everything)
from .errors import ConfigError, DataError, NonFiniteLossError
from .mixing import multi_input_mixup
from .models import find_linear_head, input_normalization
from .progress import track
from .train_config import (AdaptConfig, LoopConfig, MIMConfig, OEConfig, PretrainConfig,
                           TrainResult)

EvalHook = Callable[[nn.Module, int], dict[str, float]]
STAT_NAMES = ("loss_id", "loss_out", "acc_id", "msp_id", "msp_out")


def mim_finetune(model: nn.Module, id_train: ImageSet, config: MIMConfig | None = None, *,
                 on_eval: EvalHook | None = None, **overrides: Any) -> TrainResult:
    """Fine-tune ``model`` with Multiple Input Mixup on ``id_train``.

    Each step: an ID batch x, N mixed images (each the mean of k members of x, drawn by k
    independent permutations), post-mix augmentation with probability ``aug_p``, and the loss
    CE(f(x), y) + lam * CE(f(x_mix), uniform). Keyword overrides update ``config`` (e.g.
    ``k=5, steps=100``). ``on_eval(model, step)`` is called every ``eval_every`` steps.
    """
    cfg = _settings(config, MIMConfig, "mim_finetune", overrides)
    _check_inputs(model, id_train, on_eval)
    augment = cfg.augmenter(input_normalization(model))

    def mixed_outliers(x: Tensor, gen: torch.Generator) -> Tensor:
        return augment(multi_input_mixup(x, cfg.k, weights=cfg.weights, alpha=cfg.alpha,
                                         generator=gen), generator=gen)

    # lam = 0 is the control: the same steps on the ID loss alone; the mixed batch is not made,
    # so it reaches neither the loss nor the batch-norm statistics
    return _train(model, id_train, cfg, mixed_outliers if cfg.lam > 0 else None, on_eval,
                  "MIM fine-tuning" if cfg.lam > 0 else "control fine-tuning (lam = 0)")


def oe_finetune(model: nn.Module, id_train: ImageSet, outliers: ImageSet,
                config: OEConfig | None = None, *, on_eval: EvalHook | None = None,
                **overrides: Any) -> TrainResult:
    """Fine-tune with Outlier Exposure on an auxiliary set (e.g. pytorch-ood's 300K images)."""
    cfg = _settings(config, OEConfig, "oe_finetune", overrides)
    _check_inputs(model, id_train, on_eval)
    if not isinstance(outliers, ImageSet):
        raise ConfigError(f"outliers must be an ImageSet (mimlib.load_ood gives one), got "
                          f"{type(outliers).__name__}")
    device = resolve_device(cfg.device)
    aux = outliers.images.to(device)
    stream = _IndexStream(len(aux), cfg.outlier_batch_size, cfg.seed + 7)
    norm = input_normalization(model)

    def auxiliary_outliers(x: Tensor, gen: torch.Generator) -> Tensor:
        batch = aux[stream.next().to(device)]
        return norm.apply(random_crop_flip(batch, generator=gen))

    return _train(model, id_train, cfg, auxiliary_outliers, on_eval, "OE fine-tuning")


def pretrain(model: nn.Module, id_train: ImageSet, config: PretrainConfig | None = None, *,
             on_eval: EvalHook | None = None, **overrides: Any) -> TrainResult:
    """Train a classifier from scratch with the OE baseline recipe (see :class:`PretrainConfig`)."""
    cfg = _settings(config, PretrainConfig, "pretrain", overrides)
    _check_inputs(model, id_train, on_eval)
    return _train(model, id_train, cfg, None, on_eval, "pretraining")


def adapt(model: nn.Module, id_train: ImageSet, accuracy: Callable[[nn.Module], float],
          config: AdaptConfig | None = None, **overrides: Any) -> TrainResult:
    """Fine-tune with the ID loss alone, one epoch at a time, while ``accuracy(model)`` rises.

    Epoch e uses seed ``seed + e`` for its batch order and augmentation. The result holds the
    weights of the best epoch (epoch 0 = the model as given), ``evals`` the accuracy after each
    epoch, and ``log`` the steps of every epoch run.
    """
    cfg = _settings(config, AdaptConfig, "adapt", overrides)
    _check_inputs(model, id_train)
    if not callable(accuracy):
        raise ConfigError(f"accuracy must be a function of the model, got {accuracy!r}")
    epoch_cfg = dataclasses.replace(cfg, epochs=1.0, steps=None, eval_every=0)
    start = time.perf_counter()
    best_acc = accuracy(model.eval())
    best_state = copy.deepcopy(model.state_dict())
    evals, log = [{"epoch": 0, "accuracy": best_acc}], []
    for epoch in range(1, cfg.max_epochs + 1):
        result = _train(model, id_train, dataclasses.replace(epoch_cfg, seed=cfg.seed + epoch),
                        None, None, f"adaptation, epoch {epoch}")
        log += [{**row, "epoch": epoch} for row in result.log]
        acc = accuracy(model.eval())
        evals.append({"epoch": epoch, "accuracy": acc})
        if acc <= best_acc:
            break
        best_acc, best_state = acc, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return TrainResult(model.eval(), log, evals, time.perf_counter() - start,
                       dataclasses.asdict(cfg))


# --------------------------------------------------------------------------- the loop

def _train(model: nn.Module, id_train: ImageSet, cfg: LoopConfig,
           outliers: Callable[[Tensor, torch.Generator], Tensor] | None,
           on_eval: EvalHook | None, desc: str) -> TrainResult:
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    model.to(device)
    precision = resolve_precision(device, cfg.precision)
    layout = resolve_layout(device, cfg.layout)
    forward = torch.compile(model) if cfg.compile else model
    norm = input_normalization(model)
    images, labels = id_train.images.to(device), id_train.labels.to(device)
    n = len(images)
    total = cfg.total_steps(n)
    order = _batch_order(n, cfg, total)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, nesterov=cfg.nesterov)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg.schedule, total))
    stats = torch.zeros((total, len(STAT_NAMES)), device=device)
    lrs: list[float] = []
    evals: list[dict[str, float]] = []
    checked = 0
    check_every = cfg.check_every or (1 if device.type == "cpu" else 50)
    start = time.perf_counter()
    _maybe_eval(on_eval, model, 0, cfg, evals)
    train_mode = cfg.bn_mode != "frozen"
    model.train(train_mode)
    with out_of_memory_as_error(cfg.batch_size), in_layout(model, layout) as memory_format:
        for step, idx in track(enumerate(order), total, desc):
            idx = idx.to(device, non_blocking=True)
            raw = images[idx]
            if cfg.id_augment == "crop_flip":
                raw = random_crop_flip(raw, generator=gen)
            x, y = norm.apply(raw), labels[idx]
            x_out = outliers(x, gen) if outliers is not None else None
            with autocast(device, precision):
                logits = _forward(forward, model, x, x_out, cfg.bn_mode, memory_format)
            loss_id = F.cross_entropy(logits[: len(x)], y)
            if x_out is not None:
                out_logp = F.log_softmax(logits[len(x):], dim=1)
                loss_out = -out_logp.mean(dim=1).mean()
                loss = loss_id + cfg.lam * loss_out
            else:
                loss_out = torch.zeros((), device=device)
                loss = loss_id
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            lrs.append(sched.get_last_lr()[0])
            sched.step()
            with torch.no_grad():
                p_id = logits[: len(x)].softmax(dim=1)
                msp_out = (out_logp.exp().amax(dim=1).mean() if x_out is not None
                           else torch.zeros((), device=device))
                stats[step] = torch.stack([loss_id.detach(), loss_out.detach(),
                                           (p_id.argmax(1) == y).float().mean(),
                                           p_id.amax(dim=1).mean(), msp_out])
            if (step + 1) % check_every == 0 or step + 1 == total:
                checked = _check_finite(stats, checked, step + 1)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < total:
                _maybe_eval(on_eval, model, step + 1, cfg, evals)
                # back to the training layout: a run with evaluations takes the same steps
                model.to(memory_format=memory_format).train(train_mode)
    model.eval()
    seconds = time.perf_counter() - start
    _maybe_eval(on_eval, model, total, cfg, evals)
    rows = stats.cpu().tolist()
    log = [{"step": i + 1, "lr": lrs[i], **dict(zip(STAT_NAMES, row))} for i, row in enumerate(rows)]
    return TrainResult(model, log, evals, seconds, dataclasses.asdict(cfg))


def _forward(forward: Callable[[Tensor], Tensor], model: nn.Module, x: Tensor,
             x_out: Tensor | None, bn_mode: str, memory_format: torch.memory_format) -> Tensor:
    """Logits (float32) of the ID batch followed by the outlier batch, batch norm as
    ``bn_mode`` says: one forward pass of both, or (id-stats) two, the second one leaving the
    running statistics as the first one left them."""
    if x_out is None or bn_mode != "id-stats":
        inputs = x if x_out is None else torch.cat([x, x_out])
        return forward(inputs.contiguous(memory_format=memory_format)).float()
    logits_id = forward(x.contiguous(memory_format=memory_format))
    with running_statistics_kept(model):
        logits_out = forward(x_out.contiguous(memory_format=memory_format))
    return torch.cat([logits_id, logits_out]).float()


@contextlib.contextmanager
def running_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Batch-norm layers in train mode normalise by the batch's own statistics inside the
    block but leave their running statistics (and batch counts) as they were."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None
              else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _maybe_eval(hook: EvalHook | None, model: nn.Module, step: int, cfg: LoopConfig,
                evals: list[dict[str, float]]) -> None:
    if hook is None or not cfg.eval_every:
        return
    if evals and evals[-1]["step"] == step:
        return
    model.eval()
    with torch.no_grad():
        evals.append({"step": step, **hook(model, step)})


def _check_finite(stats: Tensor, checked: int, upto: int) -> int:
    window = stats[checked:upto, :2]
    bad = ~torch.isfinite(window).all(dim=1)
    if bool(bad.any()):
        first = checked + int(bad.nonzero()[0, 0])
        raise NonFiniteLossError(first + 1, float(stats[first, 0]), float(stats[first, 1]))
    return upto


def _batch_order(n: int, cfg: LoopConfig, total: int) -> list[Tensor]:
    """The index tensor of every step: epochs of (optionally shuffled) consecutive batches."""
    gen = torch.Generator().manual_seed(cfg.seed)
    batches: list[Tensor] = []
    while len(batches) < total:
        perm = torch.randperm(n, generator=gen) if cfg.shuffle else torch.arange(n)
        batches.extend(perm.split(cfg.batch_size))
    return batches[:total]


def _lr_factor(schedule: str, total: int) -> Callable[[int], float]:
    if schedule == "constant":
        return lambda step: 1.0
    floor = 1e-5  # OE: cosine_annealing(step, total, 1, 1e-6 / lr) with lr = 0.1

    return lambda step: floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * step / total))


class _IndexStream:
    """Endless shuffled batches of indices into a set of n items (one epoch after another)."""

    def __init__(self, n: int, batch_size: int, seed: int) -> None:
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.buffer = torch.empty(0, dtype=torch.int64)

    def next(self) -> Tensor:
        while len(self.buffer) < self.batch_size:
            self.buffer = torch.cat([self.buffer, torch.randperm(self.n, generator=self.gen)])
        out, self.buffer = self.buffer[: self.batch_size], self.buffer[self.batch_size:]
        return out


def random_crop_flip(images: Tensor, pad: int = 4, *,
                     generator: torch.Generator | None = None) -> Tensor:
    """Per-image random crop of the zero-padded image and random horizontal flip (uint8 or float).

    The torchvision ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()`` of the OE recipe,
    for a whole batch at once on its device.
    """
    n, _, h, w = images.shape
    gdev = generator.device if generator is not None else images.device
    padded = F.pad(images, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(images.device)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gdev).to(images.device)
    flip = (torch.rand(n, generator=generator, device=gdev) < 0.5).to(images.device)
    rows = (oy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=images.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chan = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


# --------------------------------------------------------------------------- validation helpers

Config = TypeVar("Config", bound=LoopConfig)


def _settings(config: LoopConfig | None, kind: type[Config], caller: str,
              overrides: dict[str, Any]) -> Config:
    """``config`` (by default ``kind()``) with the keyword overrides, if it is a ``kind``."""
    cfg = kind() if config is None else config
    if not isinstance(cfg, kind):
        raise ConfigError(f"{caller} takes its settings as {kind.__name__}, got "
                          f"{type(cfg).__name__}; pass {kind.__name__}(...) or keyword overrides")
    return _with_overrides(cfg, overrides)


def _check_inputs(model: object, id_train: object, on_eval: object = None) -> None:
    """Refuse, before any work, what the loop cannot train: a model that is not a module, a
    set that is not an :class:`ImageSet`, labels outside the model's classes (an OOD set's -1
    stopped in ``IndexError: Target -1 is out of bounds``)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}; build "
                          "one with mimlib.build_model")
    if not isinstance(id_train, ImageSet):
        raise ConfigError(f"id_train must be an ImageSet (mimlib.load_id gives one), got "
                          f"{type(id_train).__name__}")
    if on_eval is not None and not callable(on_eval):
        raise ConfigError(f"on_eval must be a function of (model, step), got {on_eval!r}")
    head = find_linear_head(model)  # a model without a known head trains all the same
    if id_train.num_classes and head is not None and head.out_features != id_train.num_classes:
        raise ConfigError(f"the model has {head.out_features} outputs but {id_train.name} has "
                          f"{id_train.num_classes} classes")
    classes = head.out_features if head is not None else id_train.num_classes
    low, high = int(id_train.labels.min()), int(id_train.labels.max())
    if low < 0 or (classes and high >= classes):
        span = (f"outside 0..{classes - 1} (the model's {classes} classes)" if classes
                else "below 0, the first class index")
        hint = ("labels -1 mark an OOD set, which has no classes to train on: train on an ID "
                "set (mimlib.load_id)" if low < 0 else
                "give the model one output per class, or relabel the set")
        raise DataError(f"{id_train.name} has labels from {low} to {high}, {span}; "
                        f"{hint}")


def _with_overrides(cfg: LoopConfig, overrides: dict[str, Any]) -> LoopConfig:
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {type(cfg).__name__}; "
                          f"known: {sorted(names)}")
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


