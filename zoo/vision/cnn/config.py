"""Every hyperparameter of the ResNet CNN, read by both twins and both trainers (standard library only)."""

from __future__ import annotations

from dataclasses import dataclass

# Blocks per stage and block type of each variant (He et al. 2016, Table 1).
VARIANTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}


@dataclass
class Config:
    variant: str = "resnet18"
    stem: str = "small"  # "imagenet": 7x7/2 conv + 3x3/2 max pool; "small": one 3x3/1 conv, for 28-32 px
    num_classes: int = 10
    in_channels: int = 1
    image_size: int = 28  # used for example batches and input checks; the network is size-agnostic
    base_width: int = 32  # channels of the first stage (torchvision: 64); stages double it
    bn_epsilon: float = 1e-5  # torch's default; Keras' default is 1e-3
    bn_momentum: float = 0.1  # torch convention: running = (1 - m) * running + m * batch; Keras uses 1 - m
    zero_init_residual: bool = False  # torchvision's option: last BN gamma of each block starts at 0
    # Recipe for mnist-5k on a laptop CPU (the model card's results come from these values). Both trainers
    # read these fields; the zoo's harness checks them (shared/recipe.py check_recipe).
    epochs: int = 3
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 2e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default; Keras' is 1e-7
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4  # decoupled (AdamW)
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 20
    grad_clip_norm: float = 0.0  # global L2 norm; 0 disables
    label_smoothing: float = 0.0
    seed: int = 0

    def validate(self) -> None:
        """One-line ValueError naming the field and the value found."""
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; found {self.variant!r}")
        if self.stem not in ("imagenet", "small"):
            raise ValueError(f"stem must be 'imagenet' or 'small'; found {self.stem!r}")
        if self.in_channels < 1 or self.num_classes < 2 or self.base_width < 1:
            raise ValueError("in_channels >= 1, num_classes >= 2 and base_width >= 1 are required")
        minimum = 32 if self.stem == "imagenet" else 8
        if self.image_size < minimum:
            raise ValueError(f"image_size {self.image_size} is below {minimum} for the {self.stem} stem")

    @property
    def block(self) -> str:
        return VARIANTS[self.variant][0]

    @property
    def layers(self) -> tuple[int, ...]:
        return VARIANTS[self.variant][1]

    @property
    def expansion(self) -> int:
        return 4 if self.block == "bottleneck" else 1
