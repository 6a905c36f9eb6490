"""ResNet (He et al. 2016) in PyTorch. Parameter and buffer names are torchvision.models.resnet's,
so a torchvision ResNet state_dict loads here with strict checking. keras_impl.py mirrors it class for class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import Config


def batch_norm(config: Config, channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=config.bn_epsilon, momentum=config.bn_momentum)


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, config: Config, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = batch_norm(config, planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = batch_norm(config, planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                conv1x1(in_planes, planes, stride), batch_norm(config, planes)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, config: Config, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = conv1x1(in_planes, planes)
        self.bn1 = batch_norm(config, planes)
        self.conv2 = conv3x3(planes, planes, stride)  # stride on the 3x3 (torchvision's v1.5)
        self.bn2 = batch_norm(config, planes)
        self.conv3 = conv1x1(planes, planes * 4)
        self.bn3 = batch_norm(config, planes * 4)
        self.downsample = None
        if stride != 1 or in_planes != planes * 4:
            self.downsample = nn.Sequential(
                conv1x1(in_planes, planes * 4, stride), batch_norm(config, planes * 4)
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        block = Bottleneck if config.block == "bottleneck" else BasicBlock
        width = config.base_width
        if config.stem == "imagenet":
            self.conv1 = nn.Conv2d(config.in_channels, width, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = conv3x3(config.in_channels, width)
        self.bn1 = batch_norm(config, width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if config.stem == "imagenet" else nn.Identity()
        in_planes = width
        for stage, blocks in enumerate(config.layers):
            planes, stride = width * 2**stage, 1 if stage == 0 else 2
            layer = []
            for i in range(blocks):
                layer.append(block(config, in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        self.fc = nn.Linear(in_planes, config.num_classes)
        self.reset_parameters(config)

    def reset_parameters(self, config: Config):
        # torchvision's initialisation: He-normal (fan_out) convolutions, BN gamma 1 and beta 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if config.zero_init_residual:  # each block's last BN gamma starts at 0
            for m in self.modules():
                if isinstance(m, BasicBlock | Bottleneck):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def forward(self, image):
        x = image.permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))  # (B, w, H', W')
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w * e, H'/8, W'/8)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 8w * e)
        return self.fc(x)  # (B, num_classes) logits


def build_model(config: Config) -> ResNet:
    return ResNet(config)


def call(model: ResNet, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["image"])}


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    return F.cross_entropy(outputs["logits"], batch["label"], label_smoothing=config.label_smoothing)
