"""Wall time of the lecture's run: droplab against a plain PyTorch loop, measured in one run.

The lecture's run: 784-256-256-10 MLP, dropout 0.5 after each hidden ReLU, SGD lr 0.1,
batch 256, 10 epochs on Fashion-MNIST (55,000 training images after the validation split).

Both sides do the same work per epoch: the minibatch steps (loss with dropout on), then
loss/accuracy in eval mode on the training set and on the validation split; the test set once
at the end. The baseline is written here, as a user would write it: tensors in memory, batches
by index, ``torch.nn.Dropout``. Data loading is outside the timings. Runs are interleaved
(loop, droplab, droplab p=0, then again...) so machine noise hits every side alike; the figure
to read is the ratio, not the seconds.

    python benchmarks/train_seed.py [--epochs 10] [--repeats 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from droplab.data import load_fashion_mnist
from droplab.train import TrainConfig, fit
from droplab.train.metrics import cpu_name


@torch.no_grad()
def evaluate(net, x, y, batch=8192, precision="fp32"):
    net.eval()
    loss, correct = 0.0, 0
    for i in range(0, len(x), batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(x[i : i + batch]).float()
        loss += F.cross_entropy(out, y[i : i + batch], reduction="sum").item()
        correct += (out.argmax(1) == y[i : i + batch]).sum().item()
    net.train()
    return loss / len(x), correct / len(x)


def plain_loop(data, epochs: int, seed: int, precision: str = "fp32") -> dict:
    """The lecture's run in plain PyTorch with nn.Dropout (forward passes under bf16 autocast with ``bf16``)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(seed)
    n = len(data.train_x)
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total = 0.0
        for i in range(0, n, 256):
            idx = order[i : i + 256]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = net(data.train_x[idx])
            loss = F.cross_entropy(logits.float(), data.train_y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        evaluate(net, data.train_x, data.train_y, precision=precision)
        val_loss, val_acc = evaluate(net, data.val_x, data.val_y, precision=precision)
    evaluate(net, data.test_x, data.test_y, precision=precision)
    return {"val_acc": val_acc}


def setup(doc: str, repeats: int):
    """The options of a benchmark of the lecture's run (--epochs, --repeats, --threads, --seed,
    --precision), its threads set, and the data loaded (outside any timing)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, load_fashion_mnist()


def main() -> None:
    args, data = setup(__doc__, repeats=5)
    sides = {
        "plain PyTorch loop, nn.Dropout": lambda: plain_loop(data, args.epochs, args.seed, args.precision),
        "droplab train (scratch, p=0.5)": lambda: fit(
            TrainConfig(epochs=args.epochs, seed=args.seed, precision=args.precision), data
        ).summary,
        "droplab train (scratch, p=0)": lambda: fit(
            TrainConfig(epochs=args.epochs, seed=args.seed, dropout=(0.0, 0.0), precision=args.precision), data
        ).summary,
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in sides}
    accs: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, run in sides.items():
            start = time.perf_counter()
            accs[name] = run()["val_acc"]
            times[name].append(time.perf_counter() - start)

    print(
        f"lecture's run: {args.epochs} epochs, 784-256-256-10, SGD lr 0.1, batch 256, {args.precision}, "
        f"{torch.get_num_threads()} threads, {cpu_name()}, torch {torch.__version__}, "
        f"{args.repeats} interleaved repeats (data loading excluded)"
    )
    print(f"{'':34s} {'median s':>9s} {'min s':>7s} {'max s':>7s} {'val_acc':>8s}")
    for name, ts in times.items():
        print(f"{name:34s} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f} {accs[name]:8.4f}")
    loop, drop, p0 = (times[k] for k in sides)

    def ratio(a, b):
        per_repeat = statistics.median(x / y for x, y in zip(a, b))
        return (
            f"{statistics.median(a) / statistics.median(b):.3f} of medians, "
            f"{min(a) / min(b):.3f} of minima, {per_repeat:.3f} median of per-repeat ratios"
        )

    print(f"ratio droplab (p=0.5) / plain loop: {ratio(drop, loop)}")
    print(f"ratio droplab (p=0.5) / droplab (p=0): {ratio(drop, p0)}")


if __name__ == "__main__":
    main()
