"""bio/danq: DanQ (Quang and Xie 2016), a CNN + BiLSTM over one-hot DNA with one logit per label.

config.py, torch_impl.py, keras_impl.py and weights.py are the model (copy the folder: README.md says how);
spec.py registers it with the zoo's harness, checks.py, interpret.py and throughput.py use the harness."""
