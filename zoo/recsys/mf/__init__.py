"""recsys/mf: biased matrix factorization for explicit ratings (Koren, Bell and Volinsky 2009).

config.py, torch_impl.py, keras_impl.py and weights.py are the model (copy the folder: README.md says how);
spec.py registers it with the zoo's harness."""
