"""ResNet (He et al. 2016) in Keras 3 (keras.ops only: TensorFlow or PyTorch backend).
Line-aligned with torch_impl.py; weight_map() maps every variable to torchvision's names.
"""

from __future__ import annotations

import math

import keras
from keras import layers

from weightmap import Row
from weightmap import batch_norm as bn_rows
from weightmap import conv2d as conv_rows
from weightmap import dense as dense_rows
from zoo.vision.cnn.config import Config

# torchvision's initialisation, written out: He-normal (fan_out) convolutions; nn.Linear's uniform.
CONV_INIT = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def batch_norm(config: Config, name: str) -> layers.BatchNormalization:
    # Keras momentum is the weight of the old running value: 1 - torch momentum.
    return layers.BatchNormalization(epsilon=config.bn_epsilon, momentum=1.0 - config.bn_momentum, name=name)


def conv(filters: int, kernel: int, stride: int, padding: int, name: str):
    """Conv with explicit symmetric zero padding (Keras 'same' pads asymmetrically when strided)."""

    def apply(x):
        if padding:
            x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=CONV_INIT,
                             name=name)(x)

    return apply


def basic_block(config: Config, x, in_planes: int, planes: int, stride: int, name: str):
    identity = x
    if stride != 1 or in_planes != planes:
        identity = conv(planes, 1, stride, 0, f"{name}_downsample_0")(x)
        identity = batch_norm(config, f"{name}_downsample_1")(identity)
    out = layers.ReLU()(batch_norm(config, f"{name}_bn1")(conv(planes, 3, stride, 1, f"{name}_conv1")(x)))
    out = batch_norm(config, f"{name}_bn2")(conv(planes, 3, 1, 1, f"{name}_conv2")(out))
    return layers.ReLU()(layers.Add()([out, identity]))


def bottleneck(config: Config, x, in_planes: int, planes: int, stride: int, name: str):
    identity = x
    if stride != 1 or in_planes != planes * 4:
        identity = conv(planes * 4, 1, stride, 0, f"{name}_downsample_0")(x)
        identity = batch_norm(config, f"{name}_downsample_1")(identity)
    out = layers.ReLU()(batch_norm(config, f"{name}_bn1")(conv(planes, 1, 1, 0, f"{name}_conv1")(x)))
    out = layers.ReLU()(batch_norm(config, f"{name}_bn2")(conv(planes, 3, stride, 1, f"{name}_conv2")(out)))
    out = batch_norm(config, f"{name}_bn3", )(conv(planes * 4, 1, 1, 0, f"{name}_conv3")(out))
    return layers.ReLU()(layers.Add()([out, identity]))


def block_names(config: Config):
    """(stage, index, keras name, canonical prefix, in_planes, planes, stride) for every block."""
    in_planes, width = config.base_width, config.base_width
    for stage, blocks in enumerate(config.layers):
        planes, stride = width * 2**stage, 1 if stage == 0 else 2
        for i in range(blocks):
            yield f"layer{stage + 1}_{i}", f"layer{stage + 1}.{i}", in_planes, planes, stride if i == 0 else 1
            in_planes = planes * config.expansion


def build_model(config: Config) -> keras.Model:
    block = bottleneck if config.block == "bottleneck" else basic_block
    width = config.base_width
    image = keras.Input(shape=(None, None, config.in_channels), name="image")  # (B, H, W, C)
    if config.stem == "imagenet":
        x = conv(width, 7, 2, 3, "conv1")(image)
    else:
        x = conv(width, 3, 1, 1, "conv1")(image)
    x = layers.ReLU()(batch_norm(config, "bn1")(x))
    if config.stem == "imagenet":
        # Zero padding equals torch's -inf padding here: the input is non-negative after ReLU.
        x = layers.MaxPooling2D(3, strides=2, name="maxpool")(layers.ZeroPadding2D(1, name="maxpool_pad")(x))
    for name, _, in_planes, planes, stride in block_names(config):
        x = block(config, x, in_planes, planes, stride, name)
    x = layers.GlobalAveragePooling2D(name="avgpool")(x)  # (B, C')
    fan_in = width * 8 * config.expansion
    bound = 1.0 / math.sqrt(fan_in)
    logits = layers.Dense(
        config.num_classes,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, mode="fan_in", distribution="uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound),
        name="fc",
    )(x)  # (B, num_classes) logits
    model = keras.Model(inputs={"image": image}, outputs=logits, name=config.variant)
    if config.zero_init_residual:
        last = "bn3" if config.block == "bottleneck" else "bn2"
        for name, *_ in block_names(config):
            gamma = model.get_layer(f"{name}_{last}").gamma
            gamma.assign(keras.ops.zeros_like(gamma))
    return model


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torchvision state_dict name -> transform, one row per tensor."""
    rows = conv_rows("conv1", "conv1") + bn_rows("bn1", "bn1")
    convs = ("conv1", "conv2", "conv3") if config.block == "bottleneck" else ("conv1", "conv2")
    for name, prefix, in_planes, planes, stride in block_names(config):
        for i, c in enumerate(convs, start=1):
            rows += conv_rows(f"{name}_{c}", f"{prefix}.{c}") + bn_rows(f"{name}_bn{i}", f"{prefix}.bn{i}")
        if stride != 1 or in_planes != planes * config.expansion:
            rows += conv_rows(f"{name}_downsample_0", f"{prefix}.downsample.0")
            rows += bn_rows(f"{name}_downsample_1", f"{prefix}.downsample.1")
    return rows + dense_rows("fc", "fc")


def call(model: keras.Model, batch: dict, training: bool = False) -> dict:
    return {"logits": model({"image": batch["image"]}, training=training)}


def compute_loss(outputs: dict, batch: dict, config: Config):
    labels = keras.ops.one_hot(batch["label"], config.num_classes)
    losses = keras.losses.categorical_crossentropy(
        labels, outputs["logits"], from_logits=True, label_smoothing=config.label_smoothing
    )
    return keras.ops.mean(losses)
