"""Driving perception net in Keras 3 (keras.ops only: TensorFlow or PyTorch backend): a residual encoder
shared by a U-Net style segmentation decoder and a PilotNet style steering head.
Line-aligned with torch_impl.py; weight_map() maps every variable to the torch twin's names.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from weightmap import CONV2D_TRANSPOSE, Row, row
from weightmap import batch_norm as bn_rows
from weightmap import conv2d as conv_rows
from weightmap import dense as dense_rows
from zoo.driving.perception.config import Config


def conv_init() -> keras.initializers.Initializer:
    """He-normal (fan_out), as torch_impl.reset_parameters; for a transposed convolution both frameworks
    take fan_out = in_channels * kh * kw from their kernel layouts. A new instance per layer: one unseeded
    Keras 3 initializer returns the same values on every call, so a shared one would start every kernel
    of a shape identical (tests/test_perception.py checks they differ)."""
    return keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def batch_norm(config: Config, name: str) -> layers.BatchNormalization:
    # Keras momentum is the weight of the old running value: 1 - torch momentum.
    return layers.BatchNormalization(epsilon=config.bn_epsilon, momentum=1.0 - config.bn_momentum, name=name)


def conv(filters: int, kernel: int, stride: int, padding: int, name: str):
    """Conv with explicit symmetric zero padding (Keras 'same' pads asymmetrically when strided)."""

    def apply(x):
        if padding:
            x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, use_bias=False, kernel_initializer=conv_init(),
                             name=name)(x)

    return apply


def conv_transpose(filters: int, name: str) -> layers.Conv2DTranspose:
    """2x upsampling: kernel 2, stride 2, 'valid' (no padding), the same as nn.ConvTranspose2d(k=2, s=2)."""
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="valid", kernel_initializer=conv_init(),
                                  bias_initializer="zeros", name=name)


def dense(units: int, fan_in: int, name: str, activation: str | None = None) -> layers.Dense:
    """torch's nn.Linear initialisation written out: weight and bias uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return layers.Dense(units, activation=activation, name=name,
                        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
                        bias_initializer=keras.initializers.RandomUniform(-bound, bound))


def residual_block(config: Config, x, in_planes: int, planes: int, stride: int, name: str):
    identity = x
    if stride != 1 or in_planes != planes:
        identity = conv(planes, 1, stride, 0, f"{name}_downsample_0")(x)
        identity = batch_norm(config, f"{name}_downsample_1")(identity)
    out = layers.ReLU()(batch_norm(config, f"{name}_bn1")(conv(planes, 3, stride, 1, f"{name}_conv1")(x)))
    out = batch_norm(config, f"{name}_bn2")(conv(planes, 3, 1, 1, f"{name}_conv2")(out))
    return layers.ReLU()(layers.Add()([out, identity]))


def up_block(config: Config, x, skip, planes: int, name: str):
    x = conv_transpose(planes, f"{name}_up")(x)  # (B, 2h, 2w, planes)
    x = layers.Concatenate(axis=-1)([x, skip])  # (B, 2h, 2w, planes + skip_planes)
    return layers.ReLU()(batch_norm(config, f"{name}_bn")(conv(planes, 3, 1, 1, f"{name}_conv")(x)))


def steering_head(config: Config, x):
    x = layers.ReLU()(batch_norm(config, "steering_bn")(conv(config.steering_channels, 1, 1, 0, "steering_conv")(x)))
    x = layers.Flatten()(x)  # (B, h * w * S), NHWC order
    for i, units in enumerate(config.steering_hidden):
        x = dense(units, x.shape[-1], f"steering_fcs_{i}", activation="relu")(x)  # (B, hidden)
    return ops.squeeze(dense(1, x.shape[-1], "steering_out")(x), axis=-1)  # (B,) steering in degrees


def block_names(config: Config):
    """(keras name, canonical prefix, in_planes, planes, stride) for every residual block."""
    in_planes = config.width
    for stage, blocks in enumerate(config.stage_blocks):
        planes, stride = config.stage_width(stage), 1 if stage == 0 else 2
        for i in range(blocks):
            yield f"layer{stage + 1}_{i}", f"layer{stage + 1}.{i}", in_planes, planes, stride if i == 0 else 1
            in_planes = planes


def build_model(config: Config) -> keras.Model:
    num_stages = len(config.stage_blocks)
    shape = (config.image_height, config.image_width, config.in_channels)
    image = keras.Input(shape=shape, name="image")  # (B, H, W, C)
    x = conv(config.width, 3, 2, 1, "stem_conv")(image)
    x = layers.ReLU()(batch_norm(config, "stem_bn")(x))  # (B, H/2, W/2, width)
    stage_outputs = {}
    for name, _, in_planes, planes, stride in block_names(config):
        x = residual_block(config, x, in_planes, planes, stride, name)
        stage_outputs[name.split("_")[0]] = x  # "layer2_1" -> "layer2": the stage's last block wins
    features = list(stage_outputs.values())  # stage s: (B, H / 2**(s+1), W / 2**(s+1), width * 2**s)
    for stage in reversed(range(1, num_stages)):
        x = up_block(config, x, features[stage - 1], config.stage_width(stage - 1), f"up{stage}")
    x = layers.ReLU()(batch_norm(config, "head_bn")(conv_transpose(config.width, "head_up")(x)))  # (B, H, W, width)
    classifier = layers.Conv2D(config.num_classes, 1, kernel_initializer=conv_init(), name="classifier")
    logits = classifier(x)  # (B, H, W, num_classes)
    steering = steering_head(config, features[-1])
    return keras.Model(inputs={"image": image}, outputs={"logits": logits, "steering": steering},
                       name="perception")


def weight_map(config: Config) -> list[Row]:
    """Keras variable path -> torch state_dict name -> transform, one row per tensor."""

    def conv_transpose_rows(keras_layer: str, canonical: str) -> list[Row]:
        return [row(f"{keras_layer}/kernel", f"{canonical}.weight", CONV2D_TRANSPOSE),
                row(f"{keras_layer}/bias", f"{canonical}.bias")]

    rows = conv_rows("stem_conv", "stem_conv") + bn_rows("stem_bn", "stem_bn")
    for name, prefix, in_planes, planes, stride in block_names(config):
        for i in (1, 2):
            rows += conv_rows(f"{name}_conv{i}", f"{prefix}.conv{i}") + bn_rows(f"{name}_bn{i}", f"{prefix}.bn{i}")
        if stride != 1 or in_planes != planes:
            rows += conv_rows(f"{name}_downsample_0", f"{prefix}.downsample.0")
            rows += bn_rows(f"{name}_downsample_1", f"{prefix}.downsample.1")
    for stage in reversed(range(1, len(config.stage_blocks))):
        rows += conv_transpose_rows(f"up{stage}_up", f"up{stage}.up")
        rows += conv_rows(f"up{stage}_conv", f"up{stage}.conv") + bn_rows(f"up{stage}_bn", f"up{stage}.bn")
    rows += conv_transpose_rows("head_up", "head_up") + bn_rows("head_bn", "head_bn")
    rows += conv_rows("classifier", "classifier", bias=True)
    rows += conv_rows("steering_conv", "steering.conv") + bn_rows("steering_bn", "steering.bn")
    for i in range(len(config.steering_hidden)):
        rows += dense_rows(f"steering_fcs_{i}", f"steering.fcs.{i}")
    return rows + dense_rows("steering_out", "steering.out")


def call(model: keras.Model, batch: dict, training: bool = False) -> dict:
    return model({"image": batch["image"]}, training=training)


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
