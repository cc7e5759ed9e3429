"""Fine-tuning from weights one has: a torchvision ResNet-18 state dict in, a new head for 4
classes, the stem and stage 1 frozen; the loss falls, the frozen parts end equal to the input
weights, and the run resumes from its own checkpoints, not from the weights again. Frozen parts'
BatchNorms use their running statistics, as in evaluation."""

import json
import shutil

import jax
import numpy as np
import optax
import pytest
from test_errors import command
from test_export import RESNET18
from tiny_run import command_line, tiny_config, write_tiny_npz

from resnet_jax import build, errors, interop, trainer
from resnet_jax.training import finetune

torch = pytest.importorskip("torch")
from test_interop import torch_resnet  # noqa: E402

# Every step sees the whole train split (72 images, no augmentation), so the losses of successive
# steps compare.
FINETUNE = {
    **RESNET18,
    "train.steps": 8,
    "train.log_every": 1,
    "train.eval_every": 8,
    "train.checkpoint_every": 4,
    "data.batch_size": 72,
    "data.augment": "none",
    "optim.lr": 0.002,
    "optim.schedule": "constant",
    "optim.weight_decay": 5e-4,
}


@pytest.fixture(scope="module")
def torchvision18(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    state_dict = torch_resnet(
        18
    ).state_dict()  # 1000 classes, random weights, non-trivial BatchNorm statistics
    torch.save(state_dict, root / "resnet18.pth")
    return root, interop.from_torchvision(state_dict)


def test_finetune_from_torchvision_weights_with_frozen_stages(torchvision18, tmp_path):
    root, loaded = torchvision18
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    weights = tmp_path / "resnet18.pth"
    shutil.copy(root / "resnet18.pth", weights)
    config = tiny_config(
        npz,
        **FINETUNE,
        init__weights=str(weights),
        init__reset_head=True,
        init__frozen=("stem", "stage1"),
    )
    build.validate_config(config, device_count=1, process_count=1)
    state, summary = trainer.run(config, str(tmp_path / "run"))

    losses = [
        row["train/loss"]
        for row in map(json.loads, open(tmp_path / "run" / "metrics.jsonl"))
        if "train/loss" in row
    ]
    assert len(losses) == 8 and all(np.diff(losses[:5]) < 0) and losses[-1] < 0.05 * losses[0], (
        losses
    )
    for collection in ("params", "batch_stats"):
        ours, theirs = getattr(state, collection), loaded[collection]
        for module in ("stem_conv", "stem_bn", "stage1_block0", "stage1_block1"):
            for path, value in jax.tree_util.tree_leaves_with_path(theirs.get(module, {})):
                np.testing.assert_array_equal(_at(ours[module], path), value)
        moved = [
            not np.array_equal(_at(ours["stage4_block1"], p), v)
            for p, v in jax.tree_util.tree_leaves_with_path(theirs["stage4_block1"])
        ]
        assert all(moved)  # the trained parts did move
    assert state.params["head"]["kernel"].shape == (512, 4)

    weights.unlink()  # the weights were only the starting point: the resumed run does not read them
    # resumes its own step 8, not the weights
    again_state, _ = trainer.run(config, str(tmp_path / "run"))
    assert int(again_state.step) == 8
    assert jax.tree.all(jax.tree.map(np.array_equal, again_state.params, state.params))


def _at(tree, path):
    for key in path:
        tree = tree[key.key]
    return np.asarray(tree)


def test_class_count_differs_without_reset_head(torchvision18, tmp_path):
    root, _ = torchvision18
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    flags = command_line(npz, **{k: v for k, v in FINETUNE.items() if k != "model.stage_strides"})
    result = command(
        "resnet_jax.main",
        *flags,
        "--config.model.stage_strides=(1,2,2,2)",
        f"--config.init.weights={root / 'resnet18.pth'}",
        f"--workdir={tmp_path / 'run'}",
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == (
        f"error: config.init.weights={root / 'resnet18.pth'}: the weights classify 1000 classes, "
        "the data set "
        f"has 4; set config.init.reset_head=True to train a new classifier"
    )


def test_shape_mismatch_names_the_key_and_both_shapes(torchvision18, tmp_path):
    root, _ = torchvision18
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    config = tiny_config(
        npz,
        **FINETUNE,
        init__weights=str(root / "resnet18.pth"),
        init__reset_head=True,
        model__width_multiplier=0.5,
    )
    with pytest.raises(
        errors.UserError,
        match=r"config.init.weights=.*resnet18.pth: Shape mismatch for 'fc.weight' "
        r"\(params/head/kernel\): expected \(1000, 256\) in torch layout, "
        r"found \(1000, 512\)",
    ):
        trainer.run(config, str(tmp_path / "run"))


def test_unknown_frozen_part_lists_the_parts(tmp_path):
    config = tiny_config(tmp_path / "x.npz", init__frozen=("stem", "layer1"))
    with pytest.raises(
        errors.UserError,
        match=r"config.init.frozen=\('stem', 'layer1'\): use parts of the model: "
        r"\['stem', 'stage1', 'stage2', 'stage3', 'head'\]",
    ):
        build.validate_config(config, device_count=1, process_count=1)


def test_frozen_parameters_get_zero_updates_with_momentum_and_weight_decay():
    params = {
        "stem_conv": {"kernel": np.ones((3, 3, 3, 4))},
        "stage1_block0": {"conv1": {"kernel": np.ones((3, 3, 4, 4))}},
        "head": {"kernel": np.ones((4, 2)), "bias": np.ones(2)},
    }
    tx = finetune.freeze(
        optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.5, momentum=0.9)), ("stem", "head")
    )
    grads = jax.tree.map(np.ones_like, params)
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update(grads, state, params)
    assert not np.any(updates["stem_conv"]["kernel"]) and not np.any(updates["head"]["bias"])
    # sgd with momentum: the second step moves by lr * (g + wd * p) * (1 + 0.9)
    np.testing.assert_allclose(updates["stage1_block0"]["conv1"]["kernel"], -0.5 * 1.1 * 1.9)


@pytest.mark.slow  # overlaps a default test; kept out of CI's 10-minute budget
def test_frozen_parts_normalise_by_their_running_statistics_in_training():
    from resnet_jax.nn.models import get_model

    x = np.random.default_rng(0).normal(2.0, 3.0, (8, 8, 8, 3)).astype(np.float32)
    model = get_model(
        "cifar_resnet14", width_multiplier=0.25, num_classes=4, frozen_norm=("stem", "stage1")
    )
    variables = jax.jit(model.init)(jax.random.key(0), x)
    _, updates = jax.jit(lambda v: model.apply(v, x, train=True, mutable=["batch_stats"]))(
        variables
    )
    before, after = variables["batch_stats"], updates["batch_stats"]
    for module in ("stem_bn", "stage1_block0", "stage1_block1"):
        assert jax.tree.all(jax.tree.map(np.array_equal, after[module], before[module]))
    assert not np.array_equal(
        after["stage2_block0"]["bn1"]["mean"], before["stage2_block0"]["bn1"]["mean"]
    )
    # every part frozen: training computes exactly what evaluation does
    frozen = model.clone(frozen_norm=("stem", "stage1", "stage2", "stage3"))
    train_logits = jax.jit(lambda v: frozen.apply(v, x, train=True, mutable=["batch_stats"])[0])(
        variables
    )
    np.testing.assert_allclose(train_logits, jax.jit(frozen.apply)(variables, x), rtol=1e-6)


@pytest.mark.slow  # overlaps a default test; kept out of CI's 10-minute budget
def test_finetune_from_another_runs_checkpoint(tmp_path):
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    first, _ = trainer.run(tiny_config(npz, optim__ema=0.5), str(tmp_path / "first"))
    config = tiny_config(
        npz,
        train__steps=2,
        init__weights=str(tmp_path / "first" / "checkpoints" / "6"),
        init__frozen=("stem", "stage1", "stage2", "stage3"),
    )
    build.validate_config(config, device_count=1, process_count=1)
    state, _ = trainer.run(config, str(tmp_path / "second"))
    # The checkpoint's EMA weights (what that run evaluates) are the start; only the head trained.
    for collection in ("params", "batch_stats"):
        ours, theirs = getattr(state, collection), first.ema[collection]
        for module in theirs:
            same = jax.tree.all(jax.tree.map(np.array_equal, ours[module], theirs[module]))
            assert same == (module != "head"), module
