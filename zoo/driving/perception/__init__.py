"""driving/perception: a multi-task front-camera net (segmentation + steering), trained on rendered roads.

A self-contained folder: config.py (standard library), torch_impl.py (torch), keras_impl.py (Keras and the
repository's torchlike.py), weights.py (numpy and weightmap.py). spec.py registers it with the zoo.
"""
