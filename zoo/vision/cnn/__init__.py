"""vision/cnn: the ResNet family (He et al. 2016), torchvision-compatible weights."""

from zoo.spec import ModelSpec
from zoo.vision.cnn.config import Config

SPEC = ModelSpec(
    name="vision/cnn",
    task="classification",
    dataset="mnist-5k",
    package=__name__,
    config_cls=Config,
)
