"""driving/perception: a multi-task front-camera net (segmentation + steering), trained on rendered roads."""

from zoo.driving.perception.config import Config
from zoo.spec import ModelSpec

SPEC = ModelSpec(
    name="driving/perception",
    task="perception",
    dataset="roads",
    package=__name__,
    config_cls=Config,
    smoke_config={
        "epochs": 1,
        "batch_size": 16,
        "eval_batch_size": 32,
        "width": 4,
        "image_height": 32,
        "image_width": 64,
        "stage_blocks": (1, 1, 1),
        "steering_hidden": (8,),
        "warmup_steps": 0,
    },
    smoke_data={"dataset": "roads", "height": 32, "width": 64, "train": 64, "validation": 16, "test": 16},
)
