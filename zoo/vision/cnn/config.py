"""Every hyperparameter of the ResNet CNN, read by both twins and both trainers."""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import UserError
from shared.recipe import Recipe

# Blocks per stage and block type of each variant (He et al. 2016, Table 1).
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


@dataclass
class Config(Recipe):
    variant: str = "resnet18"
    stem: str = "small"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "small": one 3x3/1 conv, for 28-32 px
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28  # used for example batches and input checks; the network is size-agnostic
    base_width: int = 32  # channels of the first stage (torchvision: 64); stages double it
    bn_epsilon: float = 1e-5  # torch's default; Keras' default is 1e-3
    bn_momentum: float = 0.1  # torch convention: running = (1 - m) * running + m * batch; Keras uses 1 - m
    zero_init_residual: bool = False  # torchvision's option: last BN gamma of each block starts at 0
    # Recipe for mnist-5k on a laptop CPU (the model card's results come from these values).
    epochs: int = 3
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 20
    label_smoothing: float = 0.0

    def validate(self) -> None:
        super().validate()
        if self.variant not in VARIANTS:
            raise UserError(f"variant must be one of {', '.join(VARIANTS)}; found {self.variant!r}")
        if self.stem not in ("imagenet", "small"):
            raise UserError(f"stem must be 'imagenet' or 'small'; found {self.stem!r}")
        if self.in_channels < 1 or self.num_classes < 2 or self.base_width < 1:
            raise UserError("in_channels >= 1, num_classes >= 2 and base_width >= 1 are required")
        minimum = 32 if self.stem == "imagenet" else 8
        if self.image_size < minimum:
            raise UserError(f"image_size {self.image_size} is below {minimum} for the {self.stem} stem")

    @property
    def block(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def layers(self) -> tuple[int, ...]:
        return VARIANTS[self.variant][1]

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1
