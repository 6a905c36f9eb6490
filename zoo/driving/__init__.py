"""Driving: models for a car's front camera."""
