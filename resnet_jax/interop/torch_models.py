"""The benchmark's PyTorch twins of our models: CIFAR ResNets (option-A shortcut) and torchvision's
ResNet-50.

Benchmark-only (imported by benchmark.py when torch is installed; nothing else depends on it). The
networks have the same layers and parameter counts as `get_model(...)` (269,722 / 853,018 /
25,557,032), so a timing ratio compares like with like. Torchvision is not needed: ResNet-50 is
written out here in its v1.5 form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CifarBasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + option-A shortcut (subsample, zero-pad channels), ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        sc = x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.extra:
            sc = F.pad(sc, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + sc)


class CifarResNet(nn.Module):
    """He et al. 2015's CIFAR ResNet, depth 6n+2: 3x3 stem of 16, stages of 16/32/64, 10 classes."""

    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for j in range(n):
                layers.append(CifarBasicBlock(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, H, W] -> [N, num_classes]
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: 1x1-3x3(stride)-1x1 (x4), projection shortcut where the shape
    changes."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or in_planes != planes * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    """torchvision.models.resnet50 (v1.5), the same module names, 1000 classes."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_planes, stages = 64, []
        for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            stage = []
            for j in range(blocks):
                stage.append(Bottleneck(in_planes, planes, stride if j == 0 else 1))
                in_planes = planes * 4
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(2048, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [N, 3, 224, 224] -> [N, 1000]
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def get_torch_model(name: str) -> nn.Module:
    """The twin of `resnet_jax.models.get_model(name)` for 'cifar_resnetD' (D = 6n+2) and
    'resnet50'."""
    if name.startswith("cifar_resnet"):
        return CifarResNet(int(name[len("cifar_resnet") :]))
    if name == "resnet50":
        return ResNet50()
    raise ValueError(f"No PyTorch twin for {name!r}: use 'cifar_resnetD' or 'resnet50'.")


def num_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
