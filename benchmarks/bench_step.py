"""Time one full training step (forward, backward, SGD update) of bpcore and of PyTorch.

Same MLP for both: float32, tanh hidden layers, softmax + cross-entropy, SGD; input width =
hidden width, 10 classes.  Prints the median ms/step of each, the time of bpcore's matmuls
alone (the rest of its step: elementwise work, sums, the update, Python), the bpcore/torch
ratio and bpcore's GFLOP/s as a fraction of this machine's float32 matmul peak (n = 2048).
FLOPs counted: forward 2·B·Σ fan_in·fan_out, ∂L/∂W the same, ∂L/∂a for every layer but the
first (nobody needs ∂L/∂x).  PyTorch is optional (`pip install -e '.[bench]'`).

These machines are noisy, so the four measurements of a row are interleaved round by round
(bpcore, its matmuls, torch, matmul peak, bpcore, …) and each is the median over rounds: a slow
spell hits all four alike.  Torch runs in a child process: in one process its OpenMP threads
and numpy's OpenBLAS threads spin against each other on 2 cores and slow both down by up to
10x.  For the same reason each timed block is preceded by a short pause, so the other library's
threads have stopped spinning.

It first prints what decides the result on a host: the CPU model, numpy's BLAS with the kernel
it picked for this CPU (threadpoolctl), and torch's BLAS and vector instruction set.

    python benchmarks/bench_step.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import bpcore
from bpcore.losses import as_targets, get_loss
from bpcore.training import train_step

GRID = [(4, 32, 32), (16, 32, 32), (16, 128, 128), (8, 512, 256), (4, 1024, 512)]
N_CLASSES = 10
PEAK_N = 2048
PAUSE = 0.2  # seconds of idle before each timed block: other thread pools stop spinning


def cpu_model() -> str:
    """The CPU's marketing name (Linux: /proc/cpuinfo; macOS: sysctl), and its core count."""
    name = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        name = names[0] if names else name
    elif platform.system() == "Darwin":
        sysctl = ["sysctl", "-n", "machdep.cpu.brand_string"]
        name = subprocess.run(sysctl, capture_output=True, text=True).stdout.strip() or name
    return f"{name}, {os.cpu_count()} logical cores"


def numpy_blas() -> str:
    """numpy's BLAS library, version, the kernel it runs on this CPU and its thread count (and
    scipy's, which bpcore imports too: its folder tells them apart)."""
    pools = [
        f"{p['internal_api']} {p['version']} ({Path(p['filepath']).parent.name}), kernel"
        f" {p.get('architecture', '?')}, {p['num_threads']} threads"
        for p in threadpool_info()
        if p["user_api"] == "blas"
    ]
    return "; ".join(pools) or "none found by threadpoolctl"


def torch_blas() -> str:
    """torch's BLAS (from its build config), oneDNN, and the vector ISA its kernels use."""
    import torch

    words = torch.__config__.show().replace(",", " ").split()
    blas = next((word.split("=")[1] for word in words if word.startswith("BLAS_INFO=")), "?")
    onednn = "oneDNN" if torch.backends.mkldnn.is_available() else "no oneDNN"
    isa = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    return f"torch {torch.__version__}: BLAS {blas}, {onednn}, {isa}, {threads} threads"


def calls_per_round(fn: Callable[[], object], seconds: float = 0.05) -> int:
    """How many calls of ``fn`` (after a warm-up) take at least ``seconds``."""
    fn()
    calls = 1
    while seconds_per_call(fn, calls) * calls < seconds:
        calls *= 2
    return calls


def seconds_per_call(fn: Callable[[], object], calls: int, pause: float = 0.0) -> float:
    time.sleep(pause)
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def layer_sizes(depth: int, width: int) -> list[int]:
    return [width] * (depth + 1) + [N_CLASSES]


def step_flops(sizes: list[int], batch: int) -> float:
    products = [m * n for m, n in pairwise(sizes)]
    return 2 * batch * (2 * sum(products) + sum(products[1:]))


def matmul_call() -> Callable[[], object]:
    a, b = (np.random.default_rng(i).standard_normal((PEAK_N, PEAK_N), np.float32) for i in (0, 1))
    out = np.empty_like(a)
    return lambda: np.matmul(a, b, out=out)


def step_matmuls(depth: int, width: int, batch: int) -> Callable[[], object]:
    """The BLAS calls of one bpcore step alone, on the same shapes: zˡ = aˡ⁻¹Wˡ, ∂L/∂Wˡ = aˡ⁻¹ᵀδˡ
    and (all but the first layer) ∂L/∂aˡ⁻¹ = δˡWˡᵀ; the step's time minus theirs is the rest."""
    rng = np.random.default_rng(0)
    calls = []
    for l, (fan_in, fan_out) in enumerate(pairwise(layer_sizes(depth, width))):
        a, W, delta = (
            rng.standard_normal(shape, dtype=np.float32)
            for shape in ((batch, fan_in), (fan_in, fan_out), (batch, fan_out))
        )
        calls.append(partial(np.matmul, a, W, out=np.empty_like(delta)))
        calls.append(partial(np.matmul, a.T, delta, out=np.empty_like(W)))
        if l > 0:
            calls.append(partial(np.matmul, delta, W.T, out=np.empty_like(a)))
    return lambda: [call() for call in calls]


def bpcore_step(depth: int, width: int, batch: int) -> Callable[[], object]:
    net = bpcore.MLP(layer_sizes(depth, width), activation="tanh", dtype="float32")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, width), dtype=np.float32)
    targets = as_targets(rng.integers(0, N_CLASSES, batch), N_CLASSES, net.dtype)
    loss_fn = get_loss("cross_entropy", "softmax")
    sgd = bpcore.get_optimizer("sgd", lr=1e-3)
    bp = None

    def step() -> None:
        nonlocal bp  # as in fit: each step overwrites the previous step's arrays
        bp = train_step(net, x, targets, loss_fn, sgd, reuse=bp).bp

    return step


def torch_step(depth: int, width: int, batch: int) -> Callable[[], object]:
    import torch

    torch.manual_seed(0)
    sizes = layer_sizes(depth, width)
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in pairwise(sizes):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
    model = torch.nn.Sequential(*layers[:-1])
    sgd = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, width)
    y = torch.randint(0, N_CLASSES, (batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        sgd.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        sgd.step()

    return step


def torch_server() -> None:
    """Child process: reads 'depth width batch' to build a net, then 'time' to time a round;
    'info' prints ``torch_blas()``."""
    step, calls = None, 0
    for line in sys.stdin:
        if line.strip() == "info":
            print(torch_blas(), flush=True)
        elif line.strip() == "time":
            print(seconds_per_call(step, calls, PAUSE), flush=True)  # type: ignore[arg-type]
        else:
            step = torch_step(*map(int, line.split()))
            calls = calls_per_round(step)
            print("ready", flush=True)


class TorchChild:
    """A torch_server in its own process."""

    def __init__(self) -> None:
        code = "import bench_step; bench_step.torch_server()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=Path(__file__).parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str) -> str:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    has_torch = importlib.util.find_spec("torch") is not None
    if not has_torch:
        print("PyTorch not installed: bpcore only (pip install -e '.[bench]' to compare)")
    child = TorchChild() if has_torch else None
    print(f"CPU: {cpu_model()}")
    print(f"numpy {np.__version__}: {numpy_blas()}")
    print(child.ask("info") if child else "torch: not installed")
    peak_call = matmul_call()
    columns = ("depth", "width", "batch", "bpcore ms", "matmuls ms", "rest ms", "torch ms", "ratio")
    columns += ("GFLOP/s", "% peak")
    print(" ".join(f"{c:>{max(5, len(c))}}" for c in columns))
    peaks = []
    for depth, width, batch in GRID:
        ours_call = bpcore_step(depth, width, batch)
        matmuls_call = step_matmuls(depth, width, batch)
        calls = calls_per_round(ours_call)
        if child:
            child.ask(f"{depth} {width} {batch}")
        ours, matmuls, theirs, peak = [], [], [], []
        for _ in range(args.rounds):
            ours.append(seconds_per_call(ours_call, calls, PAUSE))
            matmuls.append(seconds_per_call(matmuls_call, calls, PAUSE))
            theirs.append(float(child.ask("time")) if child else float("nan"))
            peak.append(2 * PEAK_N**3 / seconds_per_call(peak_call, 1, PAUSE) / 1e9)
        ms, matmul_ms, torch_ms = (statistics.median(t) * 1e3 for t in (ours, matmuls, theirs))
        gflops = step_flops(layer_sizes(depth, width), batch) / ms / 1e6
        peaks.append(statistics.median(peak))
        print(
            f"{depth:>5} {width:>5} {batch:>5} {ms:>9.2f} {matmul_ms:>10.2f}"
            f" {ms - matmul_ms:>7.2f} {torch_ms:>8.2f} {ms / torch_ms:>5.2f} {gflops:>7.1f}"
            f" {100 * gflops / peaks[-1]:>5.0f}%"
        )
    peak_gflops = statistics.median(peaks)
    print(f"float32 matmul peak (n={PEAK_N}), median over rows: {peak_gflops:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
