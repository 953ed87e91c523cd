"""Writing runs to MLflow: the store (``store``), a run as the training process sees it
(``run``), the writer child process that does the writing (``writer``).

Imports go one way: ``run`` → ``store``; ``writer`` → ``store``.  Nothing here imports the app
or the figures.
"""
