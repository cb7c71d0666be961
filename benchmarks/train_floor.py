"""The lecture's run against its matrix-product floor, and against a plain PyTorch loop, in one run.

The floor is the fp32 matrix products the lecture's run cannot avoid, on the same shapes and
batches as droplab's run, and nothing else: per training step the three forward products and
the five backward ones (the gradients of the three weight matrices and of the two hidden
layers' inputs; the images need no gradient), and per epoch the forward products of the
eval-mode passes over the training images and the validation split (batches of 8,192, as
``droplab train`` evaluates), plus the test set once. Everything else a run does (the bias,
ReLU, dropout, the loss, the optimizer, the bookkeeping) is what droplab adds to it.

The run is the lecture's: 784-256-256-10, dropout 0.5 after each hidden ReLU, SGD lr 0.1,
batch 256, 10 epochs on the 55,000 training images of Fashion-MNIST after the validation split.
The three sides are interleaved (floor, droplab, plain loop, then again) so that the machine's
noise falls on each alike; read the ratios, not the seconds. Each ratio is the median over the
repeats of that repeat's ratio (the two runs of a pair are minutes apart at most: a shared
machine's slow spells fall on both). The first repeat pays once-a-process costs (torch's lazy
imports, the kernel's loading), as a user's first run does. The last line is the figure the
project tracks: ``lecture run / floor: X.XX``.

With ``--precision bf16`` the floor is the same products in bf16, droplab trains with
``--precision bf16`` and the plain loop runs its forward passes under bf16 autocast.

    python benchmarks/train_floor.py [--epochs 10] [--repeats 3] [--threads N] [--precision fp32|bf16]
"""

from __future__ import annotations

import statistics
import time

import torch
from train_seed import plain_loop, setup  # the baseline, written as a user would write it

from droplab.data import NUM_CLASSES, NUM_INPUTS
from droplab.train import TrainConfig, fit
from droplab.train.metrics import cpu_name

HIDDEN = (256, 256)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BATCH, EVAL_BATCH = 256, 8192


def _batches(n: int, size: int) -> list[int]:
    return [min(size, n - i) for i in range(0, n, size)]


def floor_products(n_train: int, n_val: int, n_test: int, epochs: int) -> list[tuple[int, int, int]]:
    """The (m, k, n) of every matrix product of the lecture's run, in order, epoch after epoch."""
    dims = [NUM_INPUTS, *HIDDEN, NUM_CLASSES]
    layers = list(zip(dims, dims[1:]))  # (in, out) of each linear layer
    step = []
    for b in _batches(n_train, BATCH):
        step.append([(b, i, o) for i, o in layers])  # forward: x (b, in) @ W^T (in, out)
        step[-1] += [(i, b, o) for i, o in layers]  # dW (out, in) = dZ^T (out, b) @ x (b, in), as (in, b, out)
        step[-1] += [(b, o, i) for i, o in layers[1:]]  # dx (b, in) = dZ (b, out) @ W (out, in); not the images'
    evals = [(b, i, o) for n in (n_train, n_val) for b in _batches(n, EVAL_BATCH) for i, o in layers]
    test = [(b, i, o) for b in _batches(n_test, EVAL_BATCH) for i, o in layers]
    return [shape for _ in range(epochs) for products in step for shape in products] + evals * epochs + test


def time_products(shapes: list[tuple[int, int, int]], dtype: torch.dtype = torch.float32) -> float:
    """Seconds to compute every product in ``shapes`` once, each on its own preallocated operands."""
    operands = {s: (torch.rand(s[0], s[1], dtype=dtype), torch.rand(s[1], s[2], dtype=dtype),
                    torch.empty(s[0], s[2], dtype=dtype)) for s in set(shapes)}  # fmt: skip
    start = time.perf_counter()
    for s in shapes:
        a, b, out = operands[s]
        torch.mm(a, b, out=out)
    return time.perf_counter() - start


def main() -> None:
    args, data = setup(__doc__, repeats=3)
    shapes = floor_products(len(data.train_x), len(data.val_x), len(data.test_x), args.epochs)
    sides = {
        f"floor: the run's {args.precision} matrix products": lambda: time_products(shapes, DTYPES[args.precision]),
        "droplab train (scratch, p=0.5)": lambda: fit(TrainConfig(epochs=args.epochs, seed=args.seed,
                                                                  precision=args.precision), data),
        "plain PyTorch loop, nn.Dropout": lambda: plain_loop(data, args.epochs, args.seed, args.precision),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(args.repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)

    flops = 2 * sum(m * k * n for m, k, n in shapes)
    print(f"lecture's run: {args.epochs} epochs, 784-256-256-10, batch 256, {args.precision}, "
          f"{torch.get_num_threads()} threads, {cpu_name()}, "
          f"torch {torch.__version__}, {args.repeats} interleaved repeats (data loading excluded); "
          f"the floor is {len(shapes):,} products, {flops / 1e9:.1f} GFLOP")  # fmt: skip
    print(f"{'':40s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, ts in times.items():
        print(f"{name:40s} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f}")
    floor, lecture, loop = times.values()

    def ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(x / y for x, y in zip(a, b))

    print(f"floor: {flops / statistics.median(floor) / 1e9:.0f} GFLOP/s")
    print(f"per repeat, lecture run / floor: {' '.join(f'{x / y:.2f}' for x, y in zip(lecture, floor))}")
    print(f"plain loop / floor: {ratio(loop, floor):.2f}")
    print(f"lecture run / plain loop: {ratio(lecture, loop):.2f}")
    print(f"lecture run / floor: {ratio(lecture, floor):.2f}")


if __name__ == "__main__":
    main()
