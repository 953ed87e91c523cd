"""``python -m experiments.plots``: the figures CLI, ``experiments.figures.cli``."""

from experiments.figures.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
