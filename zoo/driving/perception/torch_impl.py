"""Driving perception net in PyTorch: a residual encoder shared by a U-Net style segmentation decoder and a
PilotNet style steering head. state_dict names are the canonical names. keras_impl.py mirrors it class
for class.
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


def conv_transpose2x2(in_planes: int, out_planes: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_planes, out_planes, 2, stride=2)


class BasicBlock(nn.Module):
    """The ResNet basic block of vision/cnn (the same code), kept here so that this folder lifts out alone."""

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


class UpBlock(nn.Module):
    """2x upsampling by a transposed convolution (kernel 2, stride 2, no padding: each input pixel writes
    its own 2x2 output block, so there is no overlap or cropping convention to match), the encoder's skip
    features concatenated after the upsampled ones, then a 3x3 convolution."""

    def __init__(self, config: Config, in_planes: int, skip_planes: int, planes: int):
        super().__init__()
        self.up = conv_transpose2x2(in_planes, planes)
        self.conv = conv3x3(planes + skip_planes, planes)
        self.bn = batch_norm(config, planes)

    def forward(self, x, skip):
        x = self.up(x)  # (B, planes, 2h, 2w)
        x = torch.cat([x, skip], dim=1)  # (B, planes + skip_planes, 2h, 2w)
        return F.relu(self.bn(self.conv(x)))


class SteeringHead(nn.Module):
    """PilotNet's regressor (Bojarski et al. 2016) on the deepest shared features: squeeze, flatten, dense."""

    def __init__(self, config: Config, in_planes: int):
        super().__init__()
        self.conv = conv1x1(in_planes, config.steering_channels)
        self.bn = batch_norm(config, config.steering_channels)
        cells = (config.image_height // config.downsampling) * (config.image_width // config.downsampling)
        sizes = (cells * config.steering_channels, *config.steering_hidden)
        self.fcs = nn.ModuleList(nn.Linear(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], 1)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))  # (B, S, h, w)
        x = torch.flatten(x.permute(0, 2, 3, 1), 1)  # (B, h * w * S), flattened in Keras' (h, w, S) order
        for fc in self.fcs:
            x = F.relu(fc(x))  # (B, hidden)
        return self.out(x)[:, 0]  # (B,) steering in degrees


class PerceptionNet(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.num_stages = len(config.stage_blocks)
        width = config.width
        self.stem_conv = conv3x3(config.in_channels, width, stride=2)
        self.stem_bn = batch_norm(config, width)
        in_planes = width
        for stage, blocks in enumerate(config.stage_blocks):
            planes, stride = config.stage_width(stage), 1 if stage == 0 else 2
            layer = []
            for i in range(blocks):
                layer.append(BasicBlock(config, in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*layer))
        for stage in reversed(range(1, self.num_stages)):  # up3, up2, up1 for four stages
            skip = config.stage_width(stage - 1)
            setattr(self, f"up{stage}", UpBlock(config, config.stage_width(stage), skip, skip))
        self.head_up = conv_transpose2x2(width, width)  # H/2 -> H
        self.head_bn = batch_norm(config, width)
        self.classifier = nn.Conv2d(width, config.num_classes, 1)  # per-pixel logits
        self.steering = SteeringHead(config, in_planes)
        self.reset_parameters()

    def reset_parameters(self):
        # He-normal (fan_out) convolutions and transposed convolutions with zero biases, BN gamma 1 and
        # beta 0; nn.Linear keeps torch's default (uniform +-1/sqrt(fan_in)), which the Keras twin writes out.
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, image):
        # A plain NCHW copy: left a permuted view (channels_last strides), torch 2.14.1's CPU backward of a
        # 1x1 stride-2 convolution with 2 to 7 input channels corrupts memory (width < 8 here).
        x = image.permute(0, 3, 1, 2).contiguous()  # (B, H, W, C) -> (B, C, H, W)
        x = F.relu(self.stem_bn(self.stem_conv(x)))  # (B, width, H/2, W/2)
        features = []
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)  # (B, width * 2**stage, H / 2**(stage+1), W / ...)
            features.append(x)
        for stage in reversed(range(1, self.num_stages)):
            x = getattr(self, f"up{stage}")(x, features[stage - 1])  # the shape of features[stage - 1]
        x = F.relu(self.head_bn(self.head_up(x)))  # (B, width, H, W)
        logits = self.classifier(x).permute(0, 2, 3, 1)  # (B, num_classes, H, W) -> (B, H, W, num_classes)
        return logits, self.steering(features[-1])


def build_model(config: Config) -> PerceptionNet:
    return PerceptionNet(config)


def call(model: PerceptionNet, batch: dict, training: bool = False) -> dict:
    logits, steering = model(batch["image"])
    return {"logits": logits, "steering": steering}


def steering_mse(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the frames whose steering is known (NaN marks unknown)."""
    target = target.to(predicted.dtype)
    known = torch.isfinite(target)
    target = torch.where(known, target, torch.zeros_like(target))  # keeps NaN out of the gradient
    squared = torch.where(known, (predicted - target) ** 2, torch.zeros_like(target))
    return squared.sum() / known.sum().clamp(min=1)


def pixel_cross_entropy(logits: torch.Tensor, mask: torch.Tensor, class_weights: tuple) -> torch.Tensor:
    """Class-weighted mean: sum(w[y] * CE) / sum(w[y]) over every pixel (torch's weight= semantics)."""
    per_pixel = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), mask.reshape(-1), reduction="none")
    weights = torch.as_tensor(class_weights, dtype=logits.dtype, device=logits.device)[mask.reshape(-1)]
    return (weights * per_pixel).sum() / weights.sum()


def compute_loss(outputs: dict, batch: dict, config: Config) -> torch.Tensor:
    pixel = pixel_cross_entropy(outputs["logits"], batch["mask"], config.class_weights)
    return pixel + config.steering_loss_weight * steering_mse(outputs["steering"], batch["steering"])
