"""The Keras twin's variables -> the torch twin's (torchvision's) state_dict names, one row per tensor.

A Keras variable's path is its canonical name under the model's name, "/" for ".":
resnet/layer1/0/conv1/kernel <-> layer1.0.conv1.weight. numpy and weightmap.py only.
"""

from __future__ import annotations

from weightmap import Row, batch_norm, conv2d, dense

from .config import Config


def weight_map(config: Config) -> list[Row]:
    def keras_path(canonical: str) -> str:
        return "resnet/" + canonical.replace(".", "/")

    def conv_bn(conv: str, bn: str) -> list[Row]:
        return conv2d(keras_path(conv), conv) + batch_norm(keras_path(bn), bn)

    rows = conv_bn("conv1", "bn1")
    convs = (1, 2, 3) if config.block == "bottleneck" else (1, 2)
    in_planes = config.base_width
    for stage, blocks in enumerate(config.layers):
        planes, stride = config.base_width * 2**stage, 1 if stage == 0 else 2
        for i in range(blocks):
            prefix, block_stride = f"layer{stage + 1}.{i}", stride if i == 0 else 1
            for c in convs:
                rows += conv_bn(f"{prefix}.conv{c}", f"{prefix}.bn{c}")
            if block_stride != 1 or in_planes != planes * config.expansion:
                rows += conv_bn(f"{prefix}.downsample.0", f"{prefix}.downsample.1")
            in_planes = planes * config.expansion
    return rows + dense(keras_path("fc"), "fc")
