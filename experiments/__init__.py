"""Hydra apps that sweep bpcore experiments and track them in MLflow."""
