"""Driving perception net in Keras 3 (keras.ops only: TensorFlow or PyTorch backend): a residual encoder
shared by a U-Net style segmentation decoder and a PilotNet style steering head. Mirrors torch_impl.py class
for class; a variable's path is its torch name under the model's ("perception/layer1/0/conv1/kernel").
"""

from __future__ import annotations

import keras
from keras import layers, ops

from torchlike import BatchNorm, Conv2D, Linear, he_normal_fan_out

from .config import Config


def batch_norm(config: Config, name: str) -> layers.BatchNormalization:
    return BatchNorm(config.bn_epsilon, config.bn_momentum, name=name)


# in_planes is unused (Keras reads the input's channels when it builds); kept so that calls read as torch's.
def conv3x3(in_planes: int, out_planes: int, stride: int = 1, name: str | None = None) -> Conv2D:
    return Conv2D(out_planes, 3, stride, 1, use_bias=False, kernel_initializer=he_normal_fan_out(), name=name)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, name: str | None = None) -> Conv2D:
    return Conv2D(out_planes, 1, stride, 0, use_bias=False, kernel_initializer=he_normal_fan_out(), name=name)


def conv_transpose2x2(in_planes: int, out_planes: int, name: str | None = None) -> layers.Conv2DTranspose:
    return layers.Conv2DTranspose(out_planes, 2, strides=2, kernel_initializer=he_normal_fan_out(), name=name)


class BasicBlock(layers.Layer):
    """The ResNet basic block of vision/cnn (the same code), kept here so that this folder lifts out alone."""

    def __init__(self, config: Config, in_planes: int, planes: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv3x3(in_planes, planes, stride, name="conv1")
        self.bn1 = batch_norm(config, "bn1")
        self.conv2 = conv3x3(planes, planes, name="conv2")
        self.bn2 = batch_norm(config, "bn2")
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = keras.Sequential(
                [conv1x1(in_planes, planes, stride, name="0"), batch_norm(config, "1")], name="downsample"
            )

    def call(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = ops.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return ops.relu(out + identity)


class UpBlock(layers.Layer):
    """2x upsampling by a transposed convolution (kernel 2, stride 2, no padding: each input pixel writes
    its own 2x2 output block, so there is no overlap or cropping convention to match), the encoder's skip
    features concatenated after the upsampled ones, then a 3x3 convolution."""

    def __init__(self, config: Config, in_planes: int, skip_planes: int, planes: int, **kwargs):
        super().__init__(**kwargs)
        self.up = conv_transpose2x2(in_planes, planes, name="up")
        self.conv = conv3x3(planes + skip_planes, planes, name="conv")
        self.bn = batch_norm(config, "bn")

    def call(self, x, skip):
        x = self.up(x)  # (B, 2h, 2w, planes)
        x = ops.concatenate([x, skip], axis=-1)  # (B, 2h, 2w, planes + skip_planes)
        return ops.relu(self.bn(self.conv(x)))


class SteeringHead(layers.Layer):
    """PilotNet's regressor (Bojarski et al. 2016) on the deepest shared features: squeeze, flatten, dense."""

    def __init__(self, config: Config, in_planes: int, **kwargs):
        super().__init__(**kwargs)
        self.conv = conv1x1(in_planes, config.steering_channels, name="conv")
        self.bn = batch_norm(config, "bn")
        cells = (config.image_height // config.downsampling) * (config.image_width // config.downsampling)
        sizes = (cells * config.steering_channels, *config.steering_hidden)
        self.fcs = [Linear(sizes[i], sizes[i + 1], name=f"fcs_{i}") for i in range(len(sizes) - 1)]
        self.out = Linear(sizes[-1], 1, name="out")

    def call(self, x):
        x = ops.relu(self.bn(self.conv(x)))  # (B, h, w, S)
        x = ops.reshape(x, (-1, x.shape[1] * x.shape[2] * x.shape[3]))  # (B, h * w * S), in (h, w, S) order
        for fc in self.fcs:
            x = ops.relu(fc(x))  # (B, hidden)
        return self.out(x)[:, 0]  # (B,) steering in degrees


class PerceptionNet(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="perception")
        self.num_stages = len(config.stage_blocks)
        width = config.width
        self.stem_conv = conv3x3(config.in_channels, width, stride=2, name="stem_conv")
        self.stem_bn = batch_norm(config, "stem_bn")
        in_planes = width
        for stage, blocks in enumerate(config.stage_blocks):
            planes, stride = config.stage_width(stage), 1 if stage == 0 else 2
            layer = []
            for i in range(blocks):
                layer.append(BasicBlock(config, in_planes, planes, stride if i == 0 else 1, name=str(i)))
                in_planes = planes
            setattr(self, f"layer{stage + 1}", keras.Sequential(layer, name=f"layer{stage + 1}"))
        for stage in reversed(range(1, self.num_stages)):  # up3, up2, up1 for four stages
            skip, name = config.stage_width(stage - 1), f"up{stage}"
            setattr(self, name, UpBlock(config, config.stage_width(stage), skip, skip, name=name))
        self.head_up = conv_transpose2x2(width, width, name="head_up")  # H/2 -> H
        self.head_bn = batch_norm(config, "head_bn")
        self.classifier = Conv2D(config.num_classes, 1, kernel_initializer=he_normal_fan_out(),
                                 name="classifier")  # per-pixel logits
        self.steering = SteeringHead(config, in_planes, name="steering")

    def call(self, image):
        x = image  # (B, H, W, C): Keras convolutions are channels-last
        x = ops.relu(self.stem_bn(self.stem_conv(x)))  # (B, H/2, W/2, width)
        features = []
        for stage in range(self.num_stages):
            x = getattr(self, f"layer{stage + 1}")(x)  # (B, H / 2**(stage+1), W / ..., width * 2**stage)
            features.append(x)
        for stage in reversed(range(1, self.num_stages)):
            x = getattr(self, f"up{stage}")(x, features[stage - 1])  # the shape of features[stage - 1]
        x = ops.relu(self.head_bn(self.head_up(x)))  # (B, H, W, width)
        logits = self.classifier(x)  # (B, H, W, num_classes)
        return logits, self.steering(features[-1])


def build_model(config: Config) -> PerceptionNet:
    model = PerceptionNet(config)
    model(keras.Input((config.image_height, config.image_width, config.in_channels)))  # creates the variables
    return model


def call(model: PerceptionNet, batch: dict, training: bool = False) -> dict:
    logits, steering = model(batch["image"], training=training)
    return {"logits": logits, "steering": steering}


def steering_mse(predicted, target):
    """Mean squared error over the frames whose steering is known (NaN marks unknown)."""
    target = ops.cast(target, predicted.dtype)
    known = ops.isfinite(target)
    target = ops.where(known, target, ops.zeros_like(target))  # keeps NaN out of the gradient
    squared = ops.where(known, ops.square(predicted - target), ops.zeros_like(target))
    return ops.sum(squared) / ops.maximum(ops.sum(ops.cast(known, squared.dtype)), 1.0)


def pixel_cross_entropy(logits, mask, class_weights: tuple):
    """Class-weighted mean: sum(w[y] * CE) / sum(w[y]) over every pixel (torch's weight= semantics)."""
    per_pixel = keras.losses.sparse_categorical_crossentropy(mask, logits, from_logits=True)  # (B, H, W)
    weights = ops.take(ops.convert_to_tensor(class_weights, dtype=logits.dtype), mask)  # (B, H, W)
    return ops.sum(weights * per_pixel) / ops.sum(weights)


def compute_loss(outputs: dict, batch: dict, config: Config):
    pixel = pixel_cross_entropy(outputs["logits"], batch["mask"], config.class_weights)
    return pixel + config.steering_loss_weight * steering_mse(outputs["steering"], batch["steering"])
