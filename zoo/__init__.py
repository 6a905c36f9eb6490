"""Zoo: canonical models written twice, in Keras 3 and PyTorch, proven to be the same model."""
