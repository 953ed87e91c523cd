"""A one-minute tour of bpcore: per-layer gradient norms at init, then training.

python -m bpcore.demo
"""

from __future__ import annotations

import numpy as np

import bpcore


def main() -> None:
    data = bpcore.make_dataset("spirals", seed=0)
    print(f"spirals: {len(data.x_train)} train / {len(data.x_val)} validation examples\n")
    print("‖∂L/∂W‖ per layer at init (input → output), depth 10, width 32:")
    for activation in ("sigmoid", "tanh", "relu"):
        net = bpcore.MLP([2] + [32] * 10 + [2], activation=activation, init="xavier_normal")
        _, bp = net.loss_and_grads(data.x_train, data.y_train, "cross_entropy")
        norms = " ".join(f"{np.linalg.norm(g):.0e}" for g in bp.dW)
        print(f"  {activation:>8}: {norms}")
    print("\ntraining a tanh net [2, 32, 32, 32, 2] with Adam, batch 32, 60 epochs:")
    net = bpcore.MLP([2, 32, 32, 32, 2], activation="tanh", seed=0)

    class Progress(bpcore.Callback):
        def on_epoch_end(self, report: bpcore.EpochReport) -> None:
            if report.epoch % 10 == 0:
                print(
                    f"  epoch {report.epoch:3d}  train loss {report.train_loss:.3f}"
                    f"  val accuracy {report.val_accuracy:.1%}"
                )

    optimizer = bpcore.get_optimizer("adam", lr=0.01)
    bpcore.fit(
        net, data, "cross_entropy", optimizer, batch_size=32, epochs=60, callbacks=[Progress()]
    )
    max_error = bpcore.gradcheck(net, data.x_val[:8], data.y_val[:8], "cross_entropy")
    print(f"\ngradcheck after training: max relative error {max_error:.1e}")


if __name__ == "__main__":
    main()
