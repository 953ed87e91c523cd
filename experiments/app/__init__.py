"""The training app: ``train(cfg)`` and its Hydra entry point, the config schema and its checks,
the sweep callback, the ``_target_`` check."""
