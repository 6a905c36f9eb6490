"""Every hyperparameter of the driving perception net, read by both twins and both trainers (standard
library only)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    num_classes: int = 4  # background, road, lane marking, vehicle (shared/data/roads.py CLASS_NAMES)
    in_channels: int = 3
    # The network is fully convolutional except the steering head, which flattens the deepest feature
    # map (PilotNet keeps the image layout too): images must be exactly this size. tools/predict.py
    # centre-crops and resizes other sizes (shared/data/roads.py fit_to_size).
    image_height: int = 64
    image_width: int = 128
    width: int = 16  # channels of the stem; stage i has width * 2**i
    # Residual blocks per stage; every stage after the first halves the size.
    stage_blocks: tuple[int, ...] = (1, 1, 1, 1)
    steering_channels: int = 16  # 1x1 convolution squeezing the deepest features before flattening
    steering_hidden: tuple[int, ...] = (100, 50, 10)  # PilotNet's dense sizes (Bojarski et al. 2016)
    # loss = sum(w[y] * CE) / sum(w[y]) over pixels (y the pixel's class) + steering_loss_weight *
    # MSE(steering in degrees). Lane markings and vehicles are ~2% of the pixels each; without the weights a
    # short CPU run settles on background and road only.
    class_weights: tuple[float, ...] = (1.0, 1.0, 2.0, 2.0)
    steering_loss_weight: float = 0.05
    bn_epsilon: float = 1e-5  # torch's default; Keras' default is 1e-3
    bn_momentum: float = 0.1  # torch convention: running = (1 - m) * running + m * batch; Keras uses 1 - m
    # Initialisers, the same in both twins: He-normal (fan_out) convolutions and transposed convolutions,
    # zero biases on convolutions; torch's nn.Linear default (uniform +-1/sqrt(fan_in)) on dense layers.
    # Recipe for `roads` on a laptop CPU (the model card's results come from these values). Both trainers
    # read these fields; the zoo's harness checks them (shared/recipe.py check_recipe).
    epochs: int = 5
    batch_size: int = 16  # twice the updates of 32 for the same CPU time; BatchNorm is fine at 16
    eval_batch_size: int = 100
    optimizer: str = "adamw"  # "adamw" | "adam" | "sgd"
    lr: float = 2e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8  # torch's default; Keras' is 1e-7
    sgd_momentum: float = 0.9
    weight_decay: float = 1e-4  # decoupled (AdamW)
    schedule: str = "cosine"  # "constant" | "cosine" | "inverse_sqrt", stepped every optimizer step
    warmup_steps: int = 100
    grad_clip_norm: float = 0.0  # global L2 norm; 0 disables
    label_smoothing: float = 0.0  # not used by this model's loss
    seed: int = 0

    def validate(self) -> None:
        """One-line ValueError naming the field and the value found."""
        if self.num_classes < 2 or self.in_channels < 1 or self.width < 1 or self.steering_channels < 1:
            raise ValueError(
                "num_classes >= 2, in_channels >= 1, width >= 1 and steering_channels >= 1 are required; "
                f"found {self.num_classes}, {self.in_channels}, {self.width}, {self.steering_channels}"
            )
        if len(self.stage_blocks) < 2 or min(self.stage_blocks) < 1:
            raise ValueError(f"stage_blocks needs >= 2 stages of >= 1 block each; found {self.stage_blocks}")
        if not self.steering_hidden or min(self.steering_hidden) < 1:
            raise ValueError(f"steering_hidden needs >= 1 layer of >= 1 unit; found {self.steering_hidden}")
        factor = self.downsampling
        for name in ("image_height", "image_width"):
            if getattr(self, name) < factor or getattr(self, name) % factor:
                raise ValueError(
                    f"{name} must be a positive multiple of {factor} (the stem and "
                    f"{len(self.stage_blocks) - 1} strided stages halve it); found {getattr(self, name)}"
                )
        if len(self.class_weights) != self.num_classes or min(self.class_weights) <= 0:
            raise ValueError(
                f"class_weights needs num_classes={self.num_classes} positive values; "
                f"found {self.class_weights}"
            )
        if self.steering_loss_weight < 0:
            raise ValueError(f"steering_loss_weight must be >= 0; found {self.steering_loss_weight}")

    @property
    def downsampling(self) -> int:
        """Input size / deepest feature map size: the strided stem and every stage after the first."""
        return 2 ** len(self.stage_blocks)

    def stage_width(self, stage: int) -> int:
        return self.width * 2**stage
