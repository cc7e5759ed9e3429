"""Torchvision weights give our ResNets PyTorch's logits, and our weights give PyTorch ours.

The PyTorch reference below uses torchvision's exact module names and forward pass (torchvision
itself is not a dependency). Random weights and non-trivial BatchNorm statistics, eval mode, logits
compared at 1e-4 relative to the largest logit.
"""

import functools

import jax
import numpy as np
import pytest
from test_errors import command
from tiny_run import REPO

from resnet_jax import convert, interop
from resnet_jax.nn.models import IMAGENET_STAGES, get_model

torch = pytest.importorskip("torch")
nn = torch.nn
torch.set_num_threads(2)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)  # v1.5: stride on the 3x3
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class TorchResNet(nn.Module):
    def __init__(self, block, layers, num_classes=1000):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2)
        self.layer3 = self._make_layer(block, 256, layers[2], 2)
        self.layer4 = self._make_layer(block, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torch_resnet(depth: int, seed: int = 0) -> TorchResNet:
    """Random weights; BN statistics calibrated on random images, then perturbed (non-trivial, yet
    sane scales)."""
    torch.manual_seed(seed)
    kind, stages = IMAGENET_STAGES[depth]
    model = TorchResNet(BasicBlock if kind == "basic" else Bottleneck, stages)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for bn in batchnorms:
            bn.momentum = (
                None  # cumulative average: the running stats become the calibration batch's
            )
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        model.train()(torch.randn(4, 3, 64, 64))
        for bn in batchnorms:
            bn.running_mean.add_(0.1 * torch.randn_like(bn.running_mean))
            bn.running_var.mul_(torch.empty_like(bn.running_var).uniform_(0.5, 2.0))
    return model.eval()


def torch_logits(model: TorchResNet, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(images).permute(0, 3, 1, 2)).numpy()  # NHWC -> NCHW


@functools.cache
def jitted_apply(model):
    return jax.jit(functools.partial(model.apply, train=False))


def our_logits(model, variables, images: np.ndarray) -> np.ndarray:
    return np.asarray(jitted_apply(model)(variables, images))


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def images(size: int, n: int = 2, seed: int = 0) -> np.ndarray:
    # [N, H, W, 3]
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_resnet18():
    return torch_resnet(18)


@pytest.fixture(scope="module")
def state_dict18(torch_resnet18):
    return {k: v.numpy() for k, v in torch_resnet18.state_dict().items()}


@pytest.mark.parametrize("depth, size", [(18, 64), (50, 64), (18, 224)])
def test_torchvision_weights_give_torch_logits(depth, size, torch_resnet18):
    reference = torch_resnet18 if depth == 18 else torch_resnet(depth)
    x = images(size)
    variables = interop.from_torchvision(reference.state_dict())  # depth inferred from the keys
    model = get_model(f"resnet{depth}")
    assert relative_error(our_logits(model, variables, x), torch_logits(reference, x)) < 1e-4


def random_variables(model, seed: int) -> dict:
    """Our variable tree, filled with He-normal kernels and non-trivial BN statistics (numpy, no
    init)."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        kind = path[-1].key
        if kind == "kernel":  # [KH, KW, C, K] conv or [C, K] dense: He-normal over fan-out
            fan_out = int(np.prod(leaf.shape[:-2], dtype=int)) * leaf.shape[-1]
            return rng.normal(0.0, np.sqrt(2.0 / fan_out), leaf.shape).astype(np.float32)
        low, high = {"scale": (0.5, 1.5), "var": (0.5, 2.0)}.get(kind, (-0.2, 0.2))
        return rng.uniform(low, high, leaf.shape).astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, interop.abstract_variables(model))


@pytest.mark.parametrize("depth", [18, 50])
def test_our_weights_give_torch_our_logits(depth):
    model = get_model(f"resnet{depth}")
    x = images(64, seed=1)
    variables = random_variables(model, seed=depth)
    reference = TorchResNet(
        BasicBlock if depth == 18 else Bottleneck, IMAGENET_STAGES[depth][1]
    ).eval()
    state_dict = interop.to_torchvision(variables)
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()}, strict=True)
    assert relative_error(torch_logits(reference, x), our_logits(model, variables, x)) < 1e-4
    back = interop.from_torchvision(state_dict, model)
    assert jax.tree.all(jax.tree.map(np.array_equal, back, variables))  # exact round trip


def test_same_padding_gives_different_logits_and_warns(torch_resnet18, state_dict18):
    x = images(64)
    with pytest.warns(UserWarning, match="padding='same'"):
        variables = interop.from_torchvision(state_dict18, get_model("resnet18", padding="same"))
    same = our_logits(get_model("resnet18", padding="same"), variables, x)
    # the equality tests would catch it
    assert relative_error(same, torch_logits(torch_resnet18, x)) > 1e-2


def test_infer_depth_for_every_torchvision_resnet():
    for depth in (18, 34, 50, 101, 152):
        assert interop.infer_depth(interop.torchvision_keys(get_model(f"resnet{depth}"))) == depth


def test_num_classes_follows_the_fc_layer(state_dict18):
    state_dict = {
        **state_dict18,
        "fc.weight": state_dict18["fc.weight"][:10],
        "fc.bias": state_dict18["fc.bias"][:10],
    }
    assert interop.from_torchvision(state_dict)["params"]["head"]["kernel"].shape == (512, 10)


def test_missing_key_is_named(state_dict18):
    state_dict = {k: v for k, v in state_dict18.items() if k != "layer2.0.downsample.0.weight"}
    with pytest.raises(
        interop.StateDictError,
        match=r"Missing .*'layer2\.0\.downsample\.0\.weight' "
        r"\(shape \(128, 64, 1, 1\)\)",
    ):
        interop.from_torchvision(state_dict)


def test_unexpected_key_is_named(state_dict18):
    with pytest.raises(interop.StateDictError, match=r"Unexpected .*'layer1\.0\.conv3\.weight'"):
        interop.from_torchvision(
            {**state_dict18, "layer1.0.conv3.weight": np.zeros((64, 64, 1, 1))}, depth=18
        )


def test_shape_mismatch_names_key_and_shapes(state_dict18):
    state_dict = {**state_dict18, "layer3.1.conv2.weight": np.zeros((256, 256, 1, 3), np.float32)}
    with pytest.raises(
        interop.StateDictError,
        match=r"'layer3\.1\.conv2\.weight'.*expected \(256, 256, 3, 3\)"
        r".*found \(256, 256, 1, 3\)",
    ):
        interop.from_torchvision(state_dict)


def test_wrong_depth_is_refused(state_dict18):
    with pytest.raises(interop.StateDictError, match="depth=34 .* resnet18"):
        interop.from_torchvision(state_dict18, depth=34)
    with pytest.raises(interop.StateDictError, match="Cannot infer"):
        interop.infer_depth([k for k in state_dict18 if not k.startswith("layer4.1.")])


@pytest.mark.parametrize("suffix", [".safetensors", ".npz", ".pth"])
def test_weight_files_round_trip(tmp_path, state_dict18, suffix):
    expected = interop.from_torchvision(state_dict18)
    interop.save_arrays(tmp_path / f"torch{suffix}", state_dict18)
    loaded = interop.load_torchvision(tmp_path / f"torch{suffix}")
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded, expected))
    if suffix != ".pth":  # our format, with the padding convention recorded
        interop.save_arrays(
            tmp_path / f"ours{suffix}",
            interop.flatten_variables(expected),
            {"padding": "symmetric"},
        )
        arrays, metadata = interop.load_arrays(tmp_path / f"ours{suffix}")
        assert metadata == {"padding": "symmetric"} and interop.is_flax_format(arrays)
        assert jax.tree.all(
            jax.tree.map(np.array_equal, interop.unflatten_variables(arrays), expected)
        )


def test_convert_command_writes_our_format_and_prints_top5(tmp_path, state_dict18, capsys):
    from PIL import Image

    interop.save_arrays(tmp_path / "resnet18.pth", state_dict18)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 240, 3), np.uint8)).save(
        tmp_path / "cat.png"
    )
    (tmp_path / "labels.txt").write_text("\n".join(f"label{i}" for i in range(1000)))
    convert.convert(
        str(tmp_path / "resnet18.pth"),
        str(tmp_path / "resnet18.npz"),
        image=str(tmp_path / "cat.png"),
        labels=str(tmp_path / "labels.txt"),
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 6 and lines[1].startswith("1. class") and "label" in lines[1]
    assert interop.load_arrays(tmp_path / "resnet18.npz")[1]["padding"] == "symmetric"
    # The command line, with the model named by the trainer's config instead of the keys: the same
    # top-5.
    out = command(
        "resnet_jax.convert",
        str(tmp_path / "resnet18.pth"),
        "--image",
        str(tmp_path / "cat.png"),
        f"--config={REPO}/configs/imagenet.py:resnet18",
        f"--labels={tmp_path / 'labels.txt'}",
    )
    assert out.returncode == 0 and out.stdout.splitlines() == lines[1:], out.stderr[-500:]
