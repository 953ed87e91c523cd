"""Backprop Lab's Hydra plugin: the tuning sweeper (``hydra/sweeper=tune``)."""
