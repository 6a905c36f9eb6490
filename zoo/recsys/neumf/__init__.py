"""recsys/neumf: Neural Collaborative Filtering, GMF + MLP towers fused (He et al. 2017).

config.py, torch_impl.py, keras_impl.py and weights.py are the model (copy the folder: README.md says how);
spec.py registers it with the zoo's harness."""
