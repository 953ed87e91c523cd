"""The quickstart job written with PyTorch Lightning and its MLFlowLogger, against the suite.

The same job on both sides: spirals (1000 points, 20% validation, 20% test, the suite's own data
set), tanh / relu / sigmoid nets of width 32 and depth 3 or 10, xavier_normal weights and zero
biases, float32, Adam at one fixed lr, batch 32, 20 epochs, the per-layer gradient norms of
weights and biases every 50 steps, train and validation loss per epoch and the test metrics at
the end, all into MLflow (a fresh sqlite store in a temporary folder for every command).  The
suite does more per run (activation statistics, update ratios, the signal and mean-field
metrics, the history and weights as artifacts); neither side draws figures.

Timed as the commands a user types, from start to exit, in fresh processes:

- one run: ``python -m experiments.train activation=tanh model.depth=3 …`` against a script
  that trains the Lightning module once (``Trainer(accelerator="cpu", devices=1,
  log_every_n_steps=50, enable_progress_bar=False, enable_model_summary=False)``, a
  ``DataLoader`` over in-memory tensors with ``shuffle=True``, no worker processes);
- the 6-run sweep (tanh, relu, sigmoid × depth 3, 10; quickstart without the lr tuning): a Hydra
  multirun with the same overrides (the basic launcher: one job after another) against the
  Lightning script training the 6 configs one after another in one process.

The four commands take turns round by round (these machines are noisy); printed: the median
wall time of each and the ratio suite / Lightning.  Needs the `bench` extra
(``pip install -e '.[bench]'``: torch and lightning).

    python benchmarks/bench_peer.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

ACTIVATIONS = ("tanh", "relu", "sigmoid")
DEPTHS = (3, 10)
SWEEP = [(activation, depth) for activation in ACTIVATIONS for depth in DEPTHS]
ONE_RUN = [("tanh", 3)]
WIDTH, BATCH, EPOCHS, LR, EVERY_N_STEPS = 32, 32, 20, 0.003, 50
SUITE_OVERRIDES = [
    "data=spirals",
    f"model.width={WIDTH}",
    "model.dtype=float32",
    "init=xavier_normal",
    "optim=adam",
    f"optim.lr={LR}",
    f"train.batch_size={BATCH}",
    f"train.epochs={EPOCHS}",
    f"log.every_n_steps={EVERY_N_STEPS}",
    "mlflow.experiment_name=quickstart",
    "mlflow.run_figures=false",
    "mlflow.sweep_figures=false",
]


def suite_command(configs: list[tuple[str, int]], store: Path) -> list[str]:
    """``python -m experiments.train`` for one config, or a multirun over the sweep's."""
    uri = f"mlflow.tracking_uri=sqlite:///{store / 'mlflow.db'}"
    command = [sys.executable, "-m", "experiments.train"]
    if len(configs) == 1:
        (activation, depth), *_ = configs
        return [*command, *SUITE_OVERRIDES, uri, f"activation={activation}", f"model.depth={depth}"]
    activations = ",".join(dict.fromkeys(a for a, _ in configs))
    depths = ",".join(dict.fromkeys(str(d) for _, d in configs))
    swept = [f"activation={activations}", f"model.depth={depths}"]
    return [*command, "-m", *SUITE_OVERRIDES, uri, *swept]


def peer_command(configs: list[tuple[str, int]], store: Path) -> list[str]:
    """This script as the Lightning job for ``configs``, one after another in one process."""
    names = ",".join(f"{activation}:{depth}" for activation, depth in configs)
    script = str(Path(__file__).resolve())
    return [sys.executable, script, "--lightning", names, "--store", str(store)]


def lightning_job(configs: list[tuple[str, int]], store: Path) -> None:
    """Train each config with Lightning, each into its own MLflow run of the store in ``store``."""
    import lightning
    import torch
    from lightning.pytorch.loggers import MLFlowLogger
    from lightning.pytorch.utilities import grad_norm
    from torch import nn
    from torch.nn.functional import cross_entropy
    from torch.utils.data import DataLoader, TensorDataset

    import bpcore

    data = bpcore.make_dataset("spirals", seed=0, val_fraction=0.2, test_fraction=0.2)

    def loader(x: object, y: object, shuffle: bool = False) -> DataLoader[tuple[torch.Tensor, ...]]:
        tensors = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y))
        return DataLoader(tensors, batch_size=BATCH if shuffle else len(tensors), shuffle=shuffle)

    class Net(lightning.LightningModule):
        def __init__(self, activation: str, depth: int) -> None:
            super().__init__()
            self.save_hyperparameters()
            unit = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}[activation]
            layers: list[nn.Module] = []
            for fan_in, fan_out in pairwise([data.n_features, *[WIDTH] * depth, data.n_classes]):
                linear = nn.Linear(fan_in, fan_out)
                nn.init.xavier_normal_(linear.weight)
                nn.init.zeros_(linear.bias)
                layers += [linear, unit()]
            self.net = nn.Sequential(*layers[:-1])

        def training_step(self, batch: list[torch.Tensor], index: int) -> torch.Tensor:
            x, y = batch
            loss = cross_entropy(self.net(x), y)
            self.log("train/loss", loss, on_step=False, on_epoch=True)
            return loss

        def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
            # ‖∂L/∂θ‖ of every weight and bias, on the steps whose values Lightning writes to
            # the logger (steps 49, 99, …: it writes when (step + 1) % log_every_n_steps == 0)
            if (self.global_step + 1) % EVERY_N_STEPS == 0:
                self.log_dict(grad_norm(self.net, norm_type=2))

        def evaluate(self, batch: list[torch.Tensor], split: str) -> None:
            x, y = batch
            logits = self.net(x)
            self.log(f"{split}/loss", cross_entropy(logits, y))
            self.log(f"{split}/accuracy", (logits.argmax(dim=1) == y).float().mean())

        def validation_step(self, batch: list[torch.Tensor], index: int) -> None:
            self.evaluate(batch, "val")

        def test_step(self, batch: list[torch.Tensor], index: int) -> None:
            self.evaluate(batch, "test")

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=LR)

    uri = f"sqlite:///{store / 'mlflow.db'}"
    for activation, depth in configs:
        lightning.seed_everything(0, verbose=False)
        logger = MLFlowLogger("quickstart", f"{activation}-d{depth}", uri, save_dir=str(store))
        trainer = lightning.Trainer(
            accelerator="cpu",
            devices=1,
            max_epochs=EPOCHS,
            logger=logger,
            log_every_n_steps=EVERY_N_STEPS,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=str(store),
        )
        net = Net(activation, depth)
        train = loader(data.x_train, data.y_train, shuffle=True)
        trainer.fit(net, train, loader(data.x_val, data.y_val))
        trainer.test(net, loader(data.x_test, data.y_test), verbose=False)
        print(f"{activation}-d{depth}: {trainer.callback_metrics['test/accuracy']:.3f}")


def wall_time(command: list[str], cwd: Path) -> float:
    """Seconds from start to exit of ``command`` run in ``cwd``; its output is dropped unless it
    fails."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout}{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lightning", help=argparse.SUPPRESS)  # the child: "tanh:3,relu:10"
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lightning:
        configs = [(a, int(d)) for a, d in (c.split(":") for c in args.lightning.split(","))]
        lightning_job(configs, args.store)
        return
    jobs = {"one run": ONE_RUN, "6-run sweep": SWEEP}
    times: dict[tuple[str, str], list[float]] = {}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for round_number in range(args.rounds):
        for job, configs in jobs.items():
            sides = [("suite", suite_command), ("lightning", peer_command)]
            for side, command in sides if round_number % 2 == 0 else sides[::-1]:
                with tempfile.TemporaryDirectory() as folder:
                    store = Path(folder)
                    seconds = wall_time(command(configs, store), cwd=store)
                times.setdefault((job, side), []).append(seconds)
                print(f"round {round_number + 1}: {job}, {side}: {seconds:.1f} s", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'job':<12} {'suite s':>8} {'Lightning s':>12} {'suite/Lightning':>16}")
    for job in jobs:
        suite, peer = (statistics.median(times[job, side]) for side in ("suite", "lightning"))
        print(f"{job:<12} {suite:>8.1f} {peer:>12.1f} {suite / peer:>16.2f}")


if __name__ == "__main__":
    main()
