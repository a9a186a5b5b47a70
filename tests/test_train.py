import copy
import os
import shutil
import sysconfig

import pytest
import torch
import torch.nn.functional as F

from mimlib import PostMixAugment, build_model, mim_finetune, multi_input_mixup, pretrain
from mimlib.data import load_id
from mimlib.images import normalize
from mimlib.device import bf16_native
from mimlib.errors import ConfigError, NonFiniteLossError
from mimlib.train import random_crop_flip
from mimlib.train_config import MIMConfig, PretrainConfig


@pytest.fixture(scope="module")
def tiny_train():
    return load_id("synthetic", "train").subset(256)


def test_logged_loss_equals_a_hand_computation(tiny_train) -> None:
    torch.manual_seed(0)
    model = build_model("small_cnn", 6)
    before = copy.deepcopy(model).eval()
    result = mim_finetune(model, tiny_train, k=4, lam=0.7, steps=1, batch_size=32,
                          shuffle=False, bn_mode="eval", aug_p=0.5, seed=3, device="cpu")
    # replay the step: batch 0, then mixing and augmentation from the seed + 1 generator
    gen = torch.Generator().manual_seed(4)
    x = normalize(tiny_train.images[:32])
    y = tiny_train.labels[:32]
    x_mix = PostMixAugment(p=0.5)(multi_input_mixup(x, 4, generator=gen), generator=gen)
    with torch.no_grad():
        logits = before(torch.cat([x, x_mix]))
    ce = F.cross_entropy(logits[:32], y)
    uniform = torch.full((32, 6), 1 / 6)
    ce_uniform = F.cross_entropy(logits[32:], uniform)  # cross-entropy to the uniform target
    row = result.log[0]
    assert row["loss_id"] == pytest.approx(ce.item(), rel=1e-5)
    assert row["loss_out"] == pytest.approx(ce_uniform.item(), rel=1e-5)
    assert row["acc_id"] == pytest.approx((logits[:32].argmax(1) == y).float().mean().item())
    assert row["msp_out"] == pytest.approx(logits[32:].softmax(1).amax(1).mean().item(), rel=1e-5)


def test_step_count_epochs_and_log_fields(tiny_train) -> None:
    model = build_model("small_cnn", 6)
    res = mim_finetune(model, tiny_train, epochs=1, batch_size=100, device="cpu")
    assert [r["step"] for r in res.log] == [1, 2, 3]  # 256 images, the last batch is smaller
    assert set(res.log[0]) == {"step", "lr", "loss_id", "loss_out", "acc_id", "msp_id", "msp_out"}
    assert not res.model.training
    res = mim_finetune(model, tiny_train, steps=5, batch_size=100, device="cpu")
    assert len(res.log) == 5


def _running_stats(model):
    return [t.clone() for name, t in model.state_dict().items() if "running_" in name]


def test_frozen_batch_norm_keeps_the_running_statistics_and_the_other_modes_move_them(
        tiny_train) -> None:
    base = build_model("small_cnn", 6)
    frozen = mim_finetune(copy.deepcopy(base), tiny_train, steps=2, bn_mode="frozen",
                          device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(_running_stats(frozen.model),
                                                  _running_stats(base)))
    for mode in ("id-stats", "mixed-stats"):
        moved = mim_finetune(copy.deepcopy(base), tiny_train, steps=2, bn_mode=mode,
                             device="cpu")
        assert not torch.equal(_running_stats(moved.model)[0], _running_stats(base)[0]), mode
    assert MIMConfig().bn_mode == "frozen"  # the authors' (their code never calls train())
    assert MIMConfig(bn_mode="eval").bn_mode == "frozen"  # the names stored keys use
    assert MIMConfig(bn_mode="train").bn_mode == "mixed-stats"


def test_id_stats_running_statistics_are_those_of_the_id_images_alone(tiny_train) -> None:
    """With the weights held (lr 0), N steps of id-stats leave exactly the running statistics
    of the same N steps on the ID batches alone (the control); mixed-stats does not."""
    base = build_model("small_cnn", 6)
    common = dict(steps=3, batch_size=32, lr=1e-12, momentum=0.0, seed=5, device="cpu",
                  layout="contiguous")
    id_alone = mim_finetune(copy.deepcopy(base), tiny_train, lam=0.0, bn_mode="id-stats",
                            **common)
    id_stats = mim_finetune(copy.deepcopy(base), tiny_train, bn_mode="id-stats", **common)
    mixed = mim_finetune(copy.deepcopy(base), tiny_train, bn_mode="mixed-stats", **common)
    for a, b in zip(_running_stats(id_stats.model), _running_stats(id_alone.model)):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(_running_stats(mixed.model)[0], _running_stats(id_alone.model)[0],
                              rtol=1e-3)
    counts = [m.num_batches_tracked for m in id_stats.model.modules()
              if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(int(c) == 3 for c in counts)  # one update per step, from the ID batch


def test_id_stats_normalises_the_mixed_batch_by_its_own_statistics(tiny_train) -> None:
    """The logged outlier loss of an id-stats step is that of the mixed batch forwarded alone
    in train mode (its own batch statistics), not of the mixture of both batches."""
    from mimlib.train import running_statistics_kept

    torch.manual_seed(0)
    model = build_model("small_cnn", 6)
    before = copy.deepcopy(model)
    result = mim_finetune(model, tiny_train, k=4, steps=1, batch_size=32, shuffle=False,
                          bn_mode="id-stats", aug_p=0.0, seed=3, device="cpu",
                          layout="contiguous")
    gen = torch.Generator().manual_seed(4)
    x = normalize(tiny_train.images[:32])
    x_mix = multi_input_mixup(x, 4, generator=gen)
    before.train()
    with torch.no_grad():
        before(x)
        with running_statistics_kept(before):
            out = before(x_mix)
    ce_uniform = -out.log_softmax(1).mean(1).mean()
    assert result.log[0]["loss_out"] == pytest.approx(ce_uniform.item(), rel=1e-5)


def test_same_seed_gives_bit_identical_weights_on_the_cpu(tiny_train) -> None:
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = build_model("small_cnn", 6)
        runs.append(mim_finetune(model, tiny_train, steps=3, seed=11, device="cpu").model)
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values()):
        assert torch.equal(a, b)


def _can_compile_on_the_cpu() -> bool:
    include = sysconfig.get_paths()["include"]
    return shutil.which("g++") is not None and os.path.exists(os.path.join(include, "Python.h"))


@pytest.mark.slow
@pytest.mark.skipif(not _can_compile_on_the_cpu(), reason="torch.compile needs g++ and Python.h")
def test_compiled_training_matches_eager_and_returns_the_plain_module(tiny_train) -> None:
    torch.manual_seed(0)
    base = build_model("small_cnn", 6)
    runs = [mim_finetune(copy.deepcopy(base), tiny_train, k=4, steps=3, batch_size=32, seed=1,
                         device="cpu", compile=flag) for flag in (False, True)]
    eager, compiled = runs
    for a, b in zip(eager.log, compiled.log):
        assert b["loss_id"] == pytest.approx(a["loss_id"], rel=1e-5)
        assert b["loss_out"] == pytest.approx(a["loss_out"], rel=1e-5)
    assert type(compiled.model) is type(base)  # checkpoints keep plain keys, no "_orig_mod."
    assert list(compiled.model.state_dict()) == list(base.state_dict())
    for a, b in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert not torch.equal(compiled.model.fc.weight, base.fc.weight)  # it trained this module


def test_non_finite_loss_stops_and_names_the_step(tiny_train) -> None:
    model = build_model("small_cnn", 6)
    with torch.no_grad():
        model.fc.bias[0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite loss at step 1 ") as err:
        mim_finetune(model, tiny_train, steps=5, device="cpu")
    assert err.value.step == 1

    def poison(model, step):  # evaluation hook; after step 2 the third step must fail
        if step == 2:
            with torch.no_grad():
                model.fc.weight[0, 0] = float("inf")
        return {}

    healthy = build_model("small_cnn", 6)
    with pytest.raises(NonFiniteLossError, match="at step 3 ") as err:
        mim_finetune(healthy, tiny_train, steps=6, eval_every=2, on_eval=poison, device="cpu")
    assert err.value.step == 3


@pytest.mark.parametrize("override,match", [
    ({"k": 0}, "k"), ({"aug_p": 1.2}, "aug_p"), ({"lr": -1.0}, "lr"), ({"epochs": 0}, "epochs"),
    ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"bn_mode": "batch"}, "bn_mode"),
    ({"weights": "random"}, "weights"), ({"lam": -1}, "lam"), ({"momentum": 1.0}, "momentum"),
    ({"lam": float("inf")}, "lam"), ({"lr": float("nan")}, "lr"),
    ({"nonsense": 1}, "unknown parameter"),
])
def test_bad_parameters_stop_before_any_work(tiny_train, override, match) -> None:
    model = build_model("small_cnn", 6)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match=match):
        mim_finetune(model, tiny_train, device="cpu", **override)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_a_model_with_the_wrong_number_of_classes_is_refused(tiny_train) -> None:
    with pytest.raises(ConfigError, match="classes"):
        mim_finetune(build_model("small_cnn", 10), tiny_train, steps=1, device="cpu")


def test_random_crop_flip_per_image() -> None:
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).view(2, 3, 32, 32).repeat(100, 1, 1, 1)
    out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every output is a (possibly flipped) 32x32 window of the zero-padded input
    padded = F.pad(x[:1], (4, 4, 4, 4))[0]
    windows = {(dy, dx, f) for dy in range(9) for dx in range(9) for f in (0, 1)}
    seen = set()
    for i in range(0, 200, 2):
        for dy, dx, f in windows:
            w = padded[:, dy:dy + 32, dx:dx + 32]
            if torch.equal(out[i], w.flip(2) if f else w):
                seen.add((dy, dx, f))
                break
        else:
            pytest.fail("output is not a window of the padded image")
    assert len(seen) > 30  # offsets and flips differ between images


def test_pretraining_learns_the_synthetic_classes() -> None:
    train = load_id("synthetic", "train").subset(1500)
    test = load_id("synthetic", "test").subset(600)
    torch.manual_seed(0)
    model = build_model("small_cnn", 6)

    def accuracy() -> float:
        with torch.no_grad():
            return (model.eval()(normalize(test.images)).argmax(1) == test.labels).float().mean().item()

    assert accuracy() < 0.3  # six classes: chance is 1/6
    res = pretrain(model, train, PretrainConfig(epochs=3, lr=0.05, device="cpu"))
    assert accuracy() > 0.45
    assert res.log[-1]["lr"] < 0.05 * 0.2  # the cosine schedule decays
    assert MIMConfig().lr == 1e-4 and MIMConfig().k == 10 and MIMConfig().batch_size == 128


def test_channels_last_gives_the_logits_of_the_contiguous_layout(tiny_train) -> None:
    """The same weights in both layouts: logits agree to fp32 tolerance, and the model comes
    back contiguous (a model scored in channels_last is stored like any other)."""
    from mimlib.detectors import extract

    torch.manual_seed(0)
    model = build_model("resnet20", 6)
    images = tiny_train.subset(64)
    plain = extract(model, images, device="cpu", layout="contiguous")
    fast = extract(model, images, device="cpu", layout="channels_last")
    assert torch.allclose(fast.logits, plain.logits, rtol=1e-4, atol=1e-5)
    assert torch.allclose(fast.features, plain.features, rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())


def test_a_channels_last_run_takes_the_steps_of_a_contiguous_run(tiny_train) -> None:
    base = build_model("resnet20", 6)
    runs = [mim_finetune(copy.deepcopy(base), tiny_train, k=4, steps=2, batch_size=16, seed=2,
                         device="cpu", layout=layout) for layout in ("contiguous",
                                                                     "channels_last")]
    for a, b in zip(runs[0].log, runs[1].log):
        assert b["loss_id"] == pytest.approx(a["loss_id"], rel=1e-4)
        assert b["loss_out"] == pytest.approx(a["loss_out"], rel=1e-4)
    for (name, a), b in zip(runs[0].model.state_dict().items(),
                            runs[1].model.state_dict().values()):
        assert b.is_contiguous(), name
        assert torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-5), name


def test_evaluations_during_training_do_not_change_a_channels_last_run(tiny_train) -> None:
    """The curve's evaluations put the model back in the training layout: the same weights as
    a run without them (the store key leaves eval_every out)."""
    base = build_model("resnet20", 6)
    common = dict(k=4, steps=4, batch_size=16, seed=2, device="cpu", layout="channels_last")
    plain = mim_finetune(copy.deepcopy(base), tiny_train, **common)
    curve = mim_finetune(copy.deepcopy(base), tiny_train, eval_every=2,
                         on_eval=lambda model, step: {"n": float(step)}, **common)
    assert len(curve.evals) == 3
    for a, b in zip(plain.model.state_dict().values(), curve.model.state_dict().values()):
        assert torch.equal(a, b)


@pytest.mark.skipif(not bf16_native(torch.device("cpu")),
                    reason="this CPU has no native bf16 (AVX-512 BF16 / AMX)")
def test_bf16_training_and_evaluation_run_in_bf16_and_stay_close_to_fp32(tiny_train) -> None:
    from mimlib.detectors import extract

    base = build_model("resnet20", 6)
    images = tiny_train.subset(64)
    runs = [mim_finetune(copy.deepcopy(base), tiny_train, k=4, steps=2, batch_size=8, seed=2,
                         device="cpu", precision=p) for p in ("fp32", "bf16")]
    fp32, bf16 = runs
    assert next(bf16.model.parameters()).dtype == torch.float32  # autocast, not a cast
    for a, b in zip(fp32.log, bf16.log):
        for key in ("loss_id", "loss_out", "msp_id"):
            assert b[key] == pytest.approx(a[key], rel=0.03), key
    reps = [extract(fp32.model, images, device="cpu", precision=p) for p in ("fp32", "bf16")]
    assert reps[1].logits.dtype == reps[1].features.dtype == torch.float32
    assert not torch.equal(reps[1].logits, reps[0].logits)  # bf16 really ran
    scale = reps[0].logits.abs().max()
    assert (reps[1].logits - reps[0].logits).abs().max() < 0.03 * scale
    assert (reps[1].logits.argmax(1) == reps[0].logits.argmax(1)).float().mean() > 0.9


def test_precision_and_layout_settings_are_checked_and_resolved(monkeypatch) -> None:
    import mimlib.device as device

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert device.resolve_precision(cpu, "auto") == "fp32"  # a CPU's bf16 is asked for
    with pytest.raises(ConfigError, match="precision"):
        device.resolve_precision(cpu, "fp16")
    monkeypatch.setattr(device, "bf16_native", lambda dev: False)
    with pytest.raises(ConfigError, match="no native bf16.*stored bf16 results are read"):
        device.resolve_precision(cpu, "bf16")  # a step that computes
    assert device.planned_precision(cpu, "bf16") == "bf16"  # what a key reads: no hardware
    assert device.planned_precision(cuda, "auto") == "bf16"
    with pytest.raises(ConfigError, match="layout"):
        MIMConfig(layout="nhwc")


def test_the_automatic_layout_is_a_rule_of_the_device_not_a_timing(monkeypatch) -> None:
    """A key that names the layout must be the same on every machine (issue 31): ``auto`` is
    contiguous on a CPU and channels_last on CUDA, whatever the machine's speed."""
    import time

    import mimlib.device as device

    def no_timing() -> float:
        raise AssertionError("resolve_layout timed something")

    monkeypatch.setattr(time, "perf_counter", no_timing)
    assert device.resolve_layout(torch.device("cpu")) == "contiguous"
    assert device.resolve_layout(torch.device("cuda")) == "channels_last"
    assert device.resolve_layout(torch.device("cuda"), "contiguous") == "contiguous"


def test_the_control_makes_no_mixed_images_and_steps_through_the_same_id_batches(
        tiny_train, monkeypatch) -> None:
    import mimlib.train as train_module

    def no_mixing(*args, **kwargs):
        raise AssertionError("the lambda = 0 control must not mix")

    torch.manual_seed(0)
    model = build_model("small_cnn", 6)
    plain = pretrain(copy.deepcopy(model), tiny_train, PretrainConfig(
        steps=4, batch_size=32, lr=1e-3, weight_decay=0.0, nesterov=False, schedule="constant",
        id_augment="none", seed=5, device="cpu"))
    monkeypatch.setattr(train_module, "multi_input_mixup", no_mixing)
    control = mim_finetune(copy.deepcopy(model), tiny_train, k=4, lam=0.0, steps=4,
                           batch_size=32, lr=1e-3, seed=5, device="cpu",
                           bn_mode="mixed-stats")  # train mode, as pretraining
    assert all(row["loss_out"] == 0 for row in control.log)
    # the same steps as plain training on the ID batches alone: identical weights
    for a, b in zip(control.model.state_dict().values(), plain.model.state_dict().values()):
        assert torch.equal(a, b)


def test_adaptation_keeps_the_best_epoch_and_stops_when_accuracy_falls(tiny_train) -> None:
    from mimlib.train import adapt

    torch.manual_seed(0)
    model = build_model("small_cnn", 6)
    scores = iter([0.50, 0.60, 0.58, 0.99])  # epoch 0 (as given), 1, 2 (falls: stop), never
    snapshots = []

    def accuracy(m: torch.nn.Module) -> float:
        snapshots.append(copy.deepcopy(m.state_dict()))
        return next(scores)

    result = adapt(model, tiny_train, accuracy, max_epochs=5, batch_size=64, device="cpu")
    assert [e["accuracy"] for e in result.evals] == [0.50, 0.60, 0.58]
    assert [e["epoch"] for e in result.evals] == [0, 1, 2]
    assert len(result.log) == 2 * 4  # two epochs of 256 images in batches of 64
    kept = result.model.state_dict()
    assert all(torch.equal(kept[k], snapshots[1][k]) for k in kept)  # epoch 1's weights
    assert not all(torch.equal(kept[k], snapshots[2][k]) for k in kept)
