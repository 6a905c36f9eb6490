"""Training: a framework-free run loop (run.py) over two twins' trainers (torch_trainer.py, keras_trainer.py)."""
