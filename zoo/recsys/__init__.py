"""Recommender systems: biased matrix factorization (mf) and Neural Collaborative Filtering (neumf)."""
