"""ResNet (He et al. 2016) in Keras 3 (keras.ops only: TensorFlow or PyTorch backend). Mirrors torch_impl.py
class for class; a variable's path is its torch name under the model's ("resnet/layer1/0/conv1/kernel").
"""

from __future__ import annotations

import keras
from keras import layers, ops

from torchlike import BatchNorm, Conv2D, Linear, MaxPool2D, he_normal_fan_out

from .config import Config


def batch_norm(config: Config, name: str, zero_gamma: bool = False) -> layers.BatchNormalization:
    gamma = "zeros" if zero_gamma else "ones"  # zeros: config.zero_init_residual, on each block's last BN
    return BatchNorm(config.bn_epsilon, config.bn_momentum, gamma_initializer=gamma, name=name)


# in_planes is unused (Keras reads the input's channels when it builds); kept so that calls read as torch's.
def conv3x3(in_planes: int, out_planes: int, stride: int = 1, name: str | None = None) -> Conv2D:
    return Conv2D(out_planes, 3, stride, 1, use_bias=False, kernel_initializer=he_normal_fan_out(), name=name)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1, name: str | None = None) -> Conv2D:
    return Conv2D(out_planes, 1, stride, 0, use_bias=False, kernel_initializer=he_normal_fan_out(), name=name)


class BasicBlock(layers.Layer):
    expansion = 1

    def __init__(self, config: Config, in_planes: int, planes: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv3x3(in_planes, planes, stride, name="conv1")
        self.bn1 = batch_norm(config, "bn1")
        self.conv2 = conv3x3(planes, planes, name="conv2")
        self.bn2 = batch_norm(config, "bn2", zero_gamma=config.zero_init_residual)
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


class Bottleneck(layers.Layer):
    expansion = 4

    def __init__(self, config: Config, in_planes: int, planes: int, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.conv1 = conv1x1(in_planes, planes, name="conv1")
        self.bn1 = batch_norm(config, "bn1")
        self.conv2 = conv3x3(planes, planes, stride, name="conv2")  # stride on the 3x3 (torchvision's v1.5)
        self.bn2 = batch_norm(config, "bn2")
        self.conv3 = conv1x1(planes, planes * 4, name="conv3")
        self.bn3 = batch_norm(config, "bn3", zero_gamma=config.zero_init_residual)
        self.downsample = None
        if stride != 1 or in_planes != planes * 4:
            self.downsample = keras.Sequential(
                [conv1x1(in_planes, planes * 4, stride, name="0"), batch_norm(config, "1")], name="downsample"
            )

    def call(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = ops.relu(self.bn1(self.conv1(x)))
        out = ops.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return ops.relu(out + identity)


class ResNet(keras.Model):
    def __init__(self, config: Config):
        super().__init__(name="resnet")
        block = Bottleneck if config.block == "bottleneck" else BasicBlock
        width = config.base_width
        if config.stem == "imagenet":
            self.conv1 = Conv2D(width, 7, 2, 3, use_bias=False, kernel_initializer=he_normal_fan_out(),
                                name="conv1")
        else:
            self.conv1 = conv3x3(config.in_channels, width, name="conv1")
        self.bn1 = batch_norm(config, "bn1")
        self.maxpool = MaxPool2D(3, 2, 1, name="maxpool") if config.stem == "imagenet" else layers.Identity()
        in_planes = width
        for stage, blocks in enumerate(config.layers):
            planes, stride = width * 2**stage, 1 if stage == 0 else 2
            layer = []
            for i in range(blocks):
                layer.append(block(config, in_planes, planes, stride if i == 0 else 1, name=str(i)))
                in_planes = planes * block.expansion
            setattr(self, f"layer{stage + 1}", keras.Sequential(layer, name=f"layer{stage + 1}"))
        self.fc = Linear(in_planes, config.num_classes, name="fc")

    def call(self, image):
        x = image  # (B, H, W, C): Keras convolutions are channels-last
        x = self.maxpool(ops.relu(self.bn1(self.conv1(x))))  # (B, H', W', w)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, H'/8, W'/8, 8w * e)
        x = ops.mean(x, axis=(1, 2))  # (B, 8w * e)
        return self.fc(x)  # (B, num_classes) logits


def build_model(config: Config) -> ResNet:
    model = ResNet(config)
    model(keras.Input((None, None, config.in_channels)))  # creates the variables (Keras builds on first call)
    return model


def call(model: ResNet, batch: dict, training: bool = False) -> dict:
    return {"logits": model(batch["image"], training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    labels = ops.one_hot(batch["label"], config.num_classes)
    losses = keras.losses.categorical_crossentropy(
        labels, outputs["logits"], from_logits=True, label_smoothing=config.label_smoothing
    )
    return ops.mean(losses)
