"""The zoo's registration of driving/perception (task, dataset, smoke recipe); the model never imports it."""

from zoo.spec import ModelSpec, TrainingRecipe

from .config import Config

SPEC = ModelSpec(
    name="driving/perception",
    task="perception",
    dataset="roads",
    package=__package__,
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
    bad_configs=(
        ({"image_height": 40}, "image_height must be a positive multiple of 16"),
        ({"stage_blocks": (1,)}, "stage_blocks needs >= 2 stages"),
        ({"steering_hidden": ()}, "steering_hidden needs >= 1 layer"),
        ({"steering_loss_weight": -1.0}, "steering_loss_weight must be >= 0"),
    ),
    heads=("classifier",),
    recipes=(
        TrainingRecipe(
            "roads",
            "The card's Results: the default Config (64x128, 5 epochs) on the generated road scenes.",
            data="roads",
            metric="miou",
            expect=0.9,
        ),
        TrainingRecipe(
            "roads-48x96",
            "Another image size and scene count, as the card's data section describes.",
            config={"image_height": 48, "image_width": 96},
            data="roads:48x96,train=2000",
        ),
    ),
)
