"""Fair comparisons between configs, as plain functions of run records (no MLflow, no
plotting): the learning rate each config is compared at (``selection``), and means with
intervals over seeds (``summary``)."""
