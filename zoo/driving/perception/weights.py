"""The Keras twin's variables -> the torch twin's state_dict names (canonical), one row per tensor.

A Keras variable's path is its canonical name under the model's name, "/" for "." (the steering head's
dense layers are fcs_<i>): perception/layer1/0/conv1/kernel <-> layer1.0.conv1.weight. numpy and
weightmap.py only.
"""

from __future__ import annotations

from weightmap import CONV2D_TRANSPOSE, Row, batch_norm, conv2d, dense, row

from .config import Config


def keras_path(canonical: str) -> str:
    return "perception/" + canonical.replace(".", "/")


def conv_bn(conv: str, bn: str) -> list[Row]:
    return conv2d(keras_path(conv), conv) + batch_norm(keras_path(bn), bn)


def conv_transpose(canonical: str) -> list[Row]:
    """nn.ConvTranspose2d (in, out, kh, kw) <-> Conv2DTranspose (kh, kw, out, in): no spatial flip."""
    return [
        row(keras_path(canonical) + "/kernel", f"{canonical}.weight", CONV2D_TRANSPOSE),
        row(keras_path(canonical) + "/bias", f"{canonical}.bias"),
    ]


def weight_map(config: Config) -> list[Row]:
    rows = conv_bn("stem_conv", "stem_bn")
    in_planes = config.width
    for stage, blocks in enumerate(config.stage_blocks):
        planes, stride = config.stage_width(stage), 1 if stage == 0 else 2
        for i in range(blocks):
            prefix, block_stride = f"layer{stage + 1}.{i}", stride if i == 0 else 1
            rows += conv_bn(f"{prefix}.conv1", f"{prefix}.bn1") + conv_bn(f"{prefix}.conv2", f"{prefix}.bn2")
            if block_stride != 1 or in_planes != planes:
                rows += conv_bn(f"{prefix}.downsample.0", f"{prefix}.downsample.1")
            in_planes = planes
    for stage in reversed(range(1, len(config.stage_blocks))):
        rows += conv_transpose(f"up{stage}.up") + conv_bn(f"up{stage}.conv", f"up{stage}.bn")
    rows += conv_transpose("head_up") + batch_norm(keras_path("head_bn"), "head_bn")
    rows += conv2d(keras_path("classifier"), "classifier", bias=True)
    rows += conv_bn("steering.conv", "steering.bn")
    for i in range(len(config.steering_hidden)):
        rows += dense(keras_path(f"steering.fcs_{i}"), f"steering.fcs.{i}")
    return rows + dense(keras_path("steering.out"), "steering.out")
