"""The zoo's registration of vision/cnn (task, dataset, smoke recipe); the model files never import it."""

from zoo.spec import ModelSpec, TrainingRecipe

from .config import Config

SPEC = ModelSpec(
    name="vision/cnn",
    task="classification",
    dataset="mnist-5k",
    package=__package__,
    config_cls=Config,
    smoke_config={"epochs": 1, "base_width": 8, "batch_size": 32, "image_size": 8, "warmup_steps": 0},
    smoke_data={"dataset": "digits"},
    bad_configs=(
        ({"variant": "resnet101"}, "variant must be one of resnet18, resnet34, resnet50"),
        ({"stem": "deep"}, "stem must be 'imagenet' or 'small'"),
        ({"num_classes": 1}, "num_classes >= 2"),
        ({"stem": "imagenet", "image_size": 28}, "image_size 28 is below 32 for the imagenet stem"),
    ),
    heads=("fc",),
    recipes=(
        TrainingRecipe(
            "mnist-5k",
            "The card's Results row: ResNet-18 (width 32, small stem), 3 epochs on the embedded MNIST subset.",
            data="mnist-5k",
            metric="accuracy",
            expect=0.98,
        ),
    ),
)
