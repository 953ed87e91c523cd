"""``python -m experiments.train``: the training app, ``experiments.app.train``."""

from experiments.app.train import main, train

__all__ = ["main", "train"]

if __name__ == "__main__":
    main()
