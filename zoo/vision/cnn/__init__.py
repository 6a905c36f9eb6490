"""vision/cnn: the ResNet family (He et al. 2016), torchvision-compatible weights.

A self-contained folder: config.py (standard library), torch_impl.py (torch), keras_impl.py (Keras and the
repository's torchlike.py), weights.py (numpy and weightmap.py). spec.py registers it with the zoo.
"""
