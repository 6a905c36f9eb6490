"""Framework-free building blocks of the zoo. Only files named torch_*.py / keras_*.py import a framework."""
