"""python -m resnet_jax.convert DIR/checkpoints/N out.pth|.npz|.safetensors: a run's checkpoint in
the formats interop reads, the .pth loading strictly into torchvision-format ResNet code with the
same logits."""

import json

import jax
import numpy as np
import pytest
from test_errors import command
from tiny_run import tiny_config, write_tiny_npz

from resnet_jax import build, interop, restore, trainer
from resnet_jax.nn.models import IMAGENET_STAGES
from resnet_jax.training import evaluation

torch = pytest.importorskip("torch")
from test_interop import (  # noqa: E402
    BasicBlock,
    TorchResNet,
    our_logits,
    relative_error,
    torch_logits,
)

# torchvision's ResNet-18 layout (7x7/2 stem, max-pool, four stages); 8x8 images shrink to 1x1 by
# stage 3.
RESNET18 = {
    "model.name": "resnet",
    "model.depth": 18,
    "model.width_multiplier": 1.0,
    "model.shortcut": "B",
    "model.stem_stride": 2,
    "model.stem_pool": True,
    "model.stage_strides": (1, 2, 2, 2),
    "optim.lr": 0.01,
    "train.allow_degenerate_maps": True,
    "train.steps": 2,
    "train.eval_every": 2,
    "train.checkpoint_every": 2,
    "train.log_every": 1,
}


@pytest.fixture(scope="module")
def resnet18_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    npz = write_tiny_npz(root / "tiny.npz")
    workdir = root / "run"
    trainer.run(tiny_config(npz, **RESNET18, optim__ema=0.5), str(workdir))
    return workdir


def test_checkpoint_exported_to_pth_loads_strictly_and_gives_the_same_logits(
    resnet18_run, tmp_path
):
    result = command(
        "resnet_jax.convert",
        str(resnet18_run / "checkpoints" / "2"),
        str(tmp_path / "run.pth"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    _, model, state = restore.restore_checkpoint(resnet18_run, 2)
    reference = TorchResNet(BasicBlock, IMAGENET_STAGES[18][1], num_classes=4)
    reference.load_state_dict(torch.load(tmp_path / "run.pth"), strict=True)
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    # the EMA, as the run evaluates
    ours = our_logits(model, evaluation.variables_of(state, raw=False), x)
    assert relative_error(torch_logits(reference.eval(), x), ours) < 1e-4


@pytest.mark.parametrize("suffix", [pytest.param(".npz", marks=pytest.mark.slow), ".safetensors"])
def test_checkpoint_exported_to_our_format_round_trips(resnet18_run, tmp_path, suffix):
    from resnet_jax import convert

    # a workdir: its latest
    convert.convert(str(resnet18_run), str(tmp_path / f"run{suffix}"), raw=True)
    arrays, metadata = interop.load_arrays(tmp_path / f"run{suffix}")
    _, _, state = restore.restore_checkpoint(resnet18_run)
    expected = interop.flatten_variables(evaluation.variables_of(state, raw=True))
    assert sorted(arrays) == sorted(expected) and all(
        np.array_equal(arrays[k], expected[k]) for k in arrays
    )
    assert metadata["padding"] == "symmetric" and json.loads(metadata["model"])["depth"] == 18


def test_missing_step_lists_the_steps_there_are(resnet18_run, tmp_path):
    result = command(
        "resnet_jax.convert", str(resnet18_run / "checkpoints" / "5"), str(tmp_path / "x.pth")
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: no checkpoint of step 5 in {resnet18_run / 'checkpoints'}; there are [2]"
    )


def test_a_model_torchvision_cannot_load_is_named_before_a_pth_export():
    from resnet_jax.nn.models import get_model

    assert (
        interop.torchvision_mismatch(
            get_model("resnet18", num_classes=4, stage_strides=[1, 2, 2, 2])
        )
        is None
    )
    assert interop.torchvision_mismatch(get_model("cifar_resnet20")) == (
        "basic blocks (3, 3, 3) per stage are none of torchvision's ResNets"
    )
    assert interop.torchvision_mismatch(get_model("resnet50", stem_stride=1, stem_pool=False)) == (
        "stem_stride=1 (resnet50: 2), stem_pool=False (resnet50: True)"
    )


@pytest.mark.slow  # overlaps a default test; kept out of CI's 10-minute budget
def test_fine_tuning_starts_from_an_exported_pth(resnet18_run, tmp_path):
    from resnet_jax import convert

    convert.convert(str(resnet18_run / "checkpoints" / "2"), str(tmp_path / "run.pth"))
    npz = write_tiny_npz(tmp_path / "tiny.npz")
    config = tiny_config(
        npz,
        **RESNET18,
        init__weights=str(tmp_path / "run.pth"),
        init__frozen=("stem", "stage1", "stage2", "stage3", "stage4"),
    )
    build.validate_config(config, device_count=1, process_count=1)
    state, summary = trainer.run(config, str(tmp_path / "finetuned"))
    _, _, exported = restore.restore_checkpoint(resnet18_run, 2)
    start = evaluation.variables_of(exported, raw=False)  # the EMA, which the export holds
    assert np.isfinite(summary["train/loss"])
    for collection in ("params", "batch_stats"):
        for module, value in start[collection].items():
            same = all(
                np.array_equal(a, b)
                for a, b in zip(
                    jax.tree.leaves(getattr(state, collection)[module]), jax.tree.leaves(value)
                )
            )
            assert same == (module != "head"), module


def test_load_params_gives_the_model_and_the_weights_the_run_evaluates(resnet18_run):
    model, variables = restore.load_params(str(resnet18_run))  # latest step, EMA weights
    _, _, state = restore.restore_checkpoint(resnet18_run)
    assert jax.tree.all(
        jax.tree.map(np.array_equal, variables, evaluation.variables_of(state, raw=False))
    )
    x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
    assert model.apply(variables, x, train=False).shape == (3, 4)
    _, raw = restore.load_params(resnet18_run, step=2, raw=True)
    assert jax.tree.all(jax.tree.map(np.array_equal, raw["params"], state.params))
