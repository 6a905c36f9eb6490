"""vision/cnn: the ResNet family (He et al. 2016), torchvision-compatible weights."""

from zoo.spec import ModelSpec
from zoo.vision.cnn.config import Config

SPEC = ModelSpec(
    name="vision/cnn",
    task="classification",
    dataset="mnist-5k",
    package=__name__,
    config_cls=Config,
    smoke_config={"epochs": 1, "base_width": 8, "batch_size": 32, "image_size": 8, "warmup_steps": 0},
    smoke_data={"dataset": "digits"},
)
