"""Biological sequence models."""
