"""Memory and time of one training step with torch's dropout and with droplab's after ``swap_dropout``
(and, for BERT, droplab's attention too: ``use_droplab_attention``).

One step (forward, backward, an SGD step) of ``torch.nn.TransformerEncoder`` (d_model 256, 4
heads, feed-forward 1024, 2 layers, dropout 0.1, batch 4 x 128 tokens) and, where transformers is
installed, of a BERT of the same sizes (``BertForSequenceClassification`` from its config, eager
attention). Per model, two copies with the same weights: torch's dropout, and droplab's after
``droplab.swap_dropout``; for BERT a third, ``droplab + attention``: ``swap_dropout`` and
``droplab.hf.use_droplab_attention`` (transformers' attention function switched to droplab's
``scaled_dot_product_attention``, which reaches the attention-probability dropout). In training,
torch's ``TransformerEncoderLayer`` takes no fused fast path (that is eval's
``_transformer_encoder_layer_fwd``): its attention goes through ``F.multi_head_attention_forward``
and ``scaled_dot_product_attention(dropout_p=0.1)``, which on CPU runs the math path and saves its
scaled mask as a float tensor. It prints:

- bytes autograd saves for backward in the step's forward (``saved_tensors_hooks``; each storage
  once, the model's parameters not counted: they live anyway), and how many of them are dropout
  masks, per site kind: the dropout layers ``swap_dropout`` reaches, and the dropout inside another
  module's forward it cannot reach (attention probabilities). A mask is a storage a dropout op
  writes: ``bernoulli_`` (CPU dropout is ``empty_like``, ``bernoulli_``, ``div_``, ``mul``; the
  math path of ``scaled_dot_product_attention`` with ``dropout_p`` calls the same), ``bernoulli``,
  ``native_dropout``'s mask, or whatever a dropout layer's own forward saves; it is attributed to
  the innermost module running when it is drawn;
- the step's time per side (the median over interleaved rounds of each round's median step: the
  sides take steps in turn, each step timed), the ratio of each droplab side to torch, and the range
  of the rounds' own ratios (a wide one: the machine was busy; the load average is printed too);
- the targets, met or not: droplab saves 0 mask bytes at the sites ``swap_dropout`` reaches, and
  its step is no slower than torch's (ratio <= 1); with droplab's attention too, 0 mask bytes at
  every site, and its step no slower than torch's.

    python benchmarks/swap_memory.py [--rounds 7] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.modules import module as module_hooks
from torch.utils._python_dispatch import TorchDispatchMode

from droplab import SwapReport, swap_dropout
from droplab.hf import use_droplab_attention
from droplab.swap import TO_DROPLAB

aten = torch.ops.aten
REACHED = "dropout layers (swap reaches)"
WITH_ATTENTION = "droplab + attention"
BATCH, SEQ = 4, 128
LAYERS = tuple(TO_DROPLAB)  # torch's dropout layers; droplab's subclass them


@dataclass
class Saved:
    """Bytes saved for backward in one forward: all, and the masks by site kind."""

    total: int = 0
    masks: dict[str, int] = field(default_factory=dict)

    @property
    def mask_bytes(self) -> int:
        return sum(self.masks.values())


class MaskRecorder(TorchDispatchMode):
    """Records the storages dropout ops write their masks into, with the site kind ``where()``
    names; keeps the masks alive so that no other tensor gets their address while it records."""

    def __init__(self, where: Callable[[], str]):
        super().__init__()
        self.where, self.masks = where, {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func.overloadpacket
        mask = args[0] if packet is aten.bernoulli_ else out if packet is aten.bernoulli else None
        if packet is aten.native_dropout:
            mask = out[1]
        if mask is not None:
            self.masks.setdefault(mask.untyped_storage().data_ptr(), (mask, self.where()))
        return out


def _site(stack: list[nn.Module]) -> str:
    inner = stack[-1] if stack else None
    if isinstance(inner, LAYERS):
        return REACHED
    return f"inside {type(inner).__name__}.forward (swap cannot reach)"


def saved_in_forward(model: nn.Module, forward: Callable[[nn.Module], torch.Tensor],
                     site: Callable[[list[nn.Module]], str] = _site) -> Saved:  # fmt: skip
    """What autograd saves for backward while ``forward(model)`` runs, masks by site kind; then
    runs backward, to free it. Besides the storages dropout ops draw masks into, whatever a dropout
    layer's own forward saves counts as its mask (a layer that draws it otherwise: ``rand`` and a
    comparison, as droplab's ``impl="reference"``). ``site`` names a mask's site kind from the stack
    of modules running when it is drawn or saved (innermost last)."""
    stack: list[nn.Module] = []
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, torch.Tensor] = {}
    in_layers: dict[int, str] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved.setdefault(ptr, t)
            if stack and isinstance(stack[-1], LAYERS):
                in_layers.setdefault(ptr, site(stack))
        return t

    def leave(module, args, output) -> None:  # returns None: the output is kept
        stack.pop()

    handles = [module_hooks.register_module_forward_pre_hook(lambda m, a: stack.append(m)),
               module_hooks.register_module_forward_hook(leave)]  # fmt: skip
    try:
        hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        with MaskRecorder(lambda: site(stack)) as recorder, hooks:
            loss = forward(model)
    finally:
        for h in handles:
            h.remove()
    result = Saved(total=sum(t.untyped_storage().nbytes() for t in saved.values()))
    sites = {ptr: where for ptr, (_, where) in recorder.masks.items()} | in_layers
    for ptr, where in sites.items():
        if ptr in saved:
            result.masks[where] = result.masks.get(where, 0) + saved[ptr].untyped_storage().nbytes()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return result


def encoder(d_model: int = 256, layers: int = 2) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    """torch's TransformerEncoder and its step's loss; the input fixed."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model, nhead=4, dim_feedforward=4 * d_model, dropout=0.1, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=layers, enable_nested_tensor=False).train()
    x = torch.randn(BATCH, SEQ, d_model)
    return model, lambda m: m(x).square().mean()


def bert(hidden: int = 256, layers: int = 2) -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]] | None:
    """A BERT from its config (eager attention) and its step's loss; None without transformers."""
    try:
        import transformers
    except ImportError:
        return None
    config = transformers.BertConfig(
        num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=4, intermediate_size=4 * hidden,
        vocab_size=1000, max_position_embeddings=SEQ, attn_implementation="eager")
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).train()
    ids, labels = torch.randint(1, 1000, (BATCH, SEQ)), torch.randint(0, 2, (BATCH,))
    return model, lambda m: m(input_ids=ids, labels=labels).loss


def sides(model: nn.Module, attention: bool = False) -> tuple[dict[str, nn.Module], SwapReport]:
    """torch's dropout, and a copy with the same weights after swap_dropout (with ``attention``, a third
    copy after swap_dropout and use_droplab_attention: a transformers model); the swap's report."""
    models = {"torch": model, "droplab": copy.deepcopy(model)}
    if attention:
        models[WITH_ATTENTION] = copy.deepcopy(model)
        swap_dropout(models[WITH_ATTENTION])
        use_droplab_attention(models[WITH_ATTENTION])
    return models, swap_dropout(models["droplab"])


def step_times(models: dict[str, nn.Module], forward, rounds: int, target_s: float) -> dict[str, list[float]]:
    """Seconds per training step per side, the median of each round: ``rounds`` rounds of about
    ``target_s`` seconds, in which the sides take steps alternately (each step timed on its own,
    the order reversed each round), so that a machine's load hits every side alike."""
    optimizers = {name: torch.optim.SGD(m.parameters(), lr=1e-4) for name, m in models.items()}

    def step(name):
        loss = forward(models[name])
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    once = {}
    for name in models:
        step(name)  # warm
        start = time.perf_counter()
        step(name)
        once[name] = time.perf_counter() - start
    reps = max(1, int(target_s / sum(once.values())))
    medians = {name: [] for name in models}
    order = list(models)
    for _ in range(rounds):
        times = {name: [] for name in models}
        for _ in range(reps):
            for name in order:
                start = time.perf_counter()
                step(name)
                times[name].append(time.perf_counter() - start)
        for name, t in times.items():
            medians[name].append(statistics.median(t))
        order.reverse()
    return medians


def _cpu() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        return "CPU unknown"


def report(label: str, model: nn.Module, forward, rounds: int, target_s: float,
           attention: bool = False) -> list[tuple[str, str, bool]]:  # fmt: skip
    """Prints one model's table (with ``attention``, the side with droplab's attention too); returns its
    targets (text, value, met)."""
    models, swapped = sides(model, attention)
    saved = {name: saved_in_forward(m, forward) for name, m in models.items()}
    per_round = step_times(models, forward, rounds, target_s)
    times = {name: statistics.median(t) for name, t in per_round.items()}
    print(f"\n{label}: {len(swapped.replaced)} dropout layer(s) swapped, "
          f"{len(swapped.unreachable)} site(s) not reached")
    width = max(map(len, models))
    print(f"  {'':{width}s} {'saved MiB':>10s} {'masks MiB':>10s} {'mask share':>10s} {'step ms':>8s}")
    for name in models:
        s = saved[name]
        print(f"  {name:{width}s} {s.total / 2**20:10.2f} {s.mask_bytes / 2**20:10.2f} "
              f"{s.mask_bytes / s.total:10.1%} {times[name] * 1e3:8.1f}")  # fmt: skip
        for where, n in sorted(s.masks.items()):
            print(f"    masks {where}: {n / 2**20:.2f} MiB")
    ratio = {}
    for name in list(models)[1:]:
        ratio[name] = times[name] / times["torch"]
        rounds_ratios = [a / b for a, b in zip(per_round[name], per_round["torch"])]
        print(f"  step time {name} / torch: {ratio[name]:.3f} (the rounds' own ratios: {min(rounds_ratios):.3f} "
              f"to {max(rounds_ratios):.3f})")  # fmt: skip
    reached = saved["droplab"].masks.get(REACHED, 0)
    targets = [(f"{label}: droplab's mask bytes at the sites swap reaches = 0 (torch's: "
                f"{saved['torch'].masks.get(REACHED, 0)})", f"{reached}", reached == 0),
               (f"{label}: droplab's step time / torch's <= 1", f"{ratio['droplab']:.3f}", ratio["droplab"] <= 1)]
    if attention:
        masks = saved[WITH_ATTENTION].mask_bytes
        targets += [(f"{label}: {WITH_ATTENTION}: mask bytes = 0 at every site (torch's: "
                     f"{saved['torch'].mask_bytes})", f"{masks}", masks == 0),
                    (f"{label}: {WITH_ATTENTION}: step time / torch's <= 1", f"{ratio[WITH_ATTENTION]:.3f}",
                     ratio[WITH_ATTENTION] <= 1)]
    return targets  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="3 rounds of shorter timings")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds, target = (3, 0.3) if args.quick else (args.rounds, 1.0)
    load = os.getloadavg()[0]
    print(f"{_cpu()}, {torch.get_num_threads()} threads, torch {torch.__version__}; one training step "
          f"(forward, backward, SGD), batch {BATCH} x {SEQ} tokens; median of {rounds} interleaved rounds")
    targets = report("TransformerEncoder (d_model 256, 2 layers)", *encoder(), rounds, target)
    hf = bert()
    if hf is None:
        print("\nBERT: transformers is not installed (pip install 'droplab[test]')")
    else:
        import transformers

        targets += report(f"BERT (transformers {transformers.__version__}, hidden 256, 2 layers, eager)", *hf,
                          rounds, target, attention=True)  # fmt: skip
    print(f"\nload average (1 min) at the start and the end: {load:.2f}, {os.getloadavg()[0]:.2f}, on "
          f"{os.cpu_count()} cores (the end's includes this run)")
    print("\ntargets:")
    for text, value, ok in targets:
        print(f"  {text}: {value} -> {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
