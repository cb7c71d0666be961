"""Training: a configuration, the loop, what it measures, checkpoints, and run directories.

The lecture's run is the default :class:`TrainConfig`: two hidden layers of 256, dropout 0.5
after each, SGD with learning rate 0.1, batch 256, 10 epochs (as d2l runs it). Data flows one
way through the modules:

- :mod:`~droplab.train.config`: :class:`TrainConfig` and its validation;
  :mod:`~droplab.train.dropout_schedule`: the dropout rates over a run (``dropout_schedule``);
- :mod:`~droplab.train.state`: :class:`~droplab.train.state.TrainState`, where a run stands
  and what it trains with (the optimizer and learning-rate schedule it builds): a checkpoint's
  schema; :mod:`~droplab.train.checks`: the checks a checkpoint passes before a run goes on from it;
- :mod:`~droplab.train.loop`: :func:`fit`, the loop; :mod:`~droplab.train.selection`: the
  epoch a run ends with (the last, or the one best on validation);
- :mod:`~droplab.train.metrics`: evaluation, activation statistics, a run's summary;
- :mod:`~droplab.train.resources`: the images, memory and disk a run needs;
- :mod:`~droplab.train.directory`: a run directory's lifecycle, :func:`run` and :func:`resume`.

Examples::

    >>> import torch
    >>> from droplab.data import FashionMNIST
    >>> g = torch.Generator().manual_seed(0)
    >>> def images(n):
    ...     return torch.rand(n, 784, generator=g), torch.randint(0, 10, (n,), generator=g)
    >>> data = FashionMNIST(*images(200), *images(50), *images(50), source="random")
    >>> result = fit(TrainConfig(hidden=(16, 16), epochs=2, batch_size=50, threads=1), data)
    >>> [row["epoch"] for row in result.history], sorted(result.history[-1])[:3]
    ([1, 2], ['epoch', 'train_acc', 'train_loss'])
"""

from ..checkpoint import CheckpointError
from .config import (
    OPTIMIZERS,
    SCHEDULES,
    SELECTIONS,
    SPLITS,
    ConfigError,
    TrainConfig,
    batches_per_epoch,
    evaluated_epochs,
    with_defaults,
)
from .directory import DataMismatch, check_same_data, resume, run, run_config, run_data, write_run
from .loop import Diverged, RunResult, fit, shift_images
from .metrics import METRICS, activation_variances, evaluate
from .resources import check_batch_size, check_memory
from .state import CheckpointWriteError, TrainState

__all__ = [
    "TrainConfig", "ConfigError", "with_defaults", "OPTIMIZERS", "SCHEDULES", "SELECTIONS", "SPLITS",
    "batches_per_epoch", "evaluated_epochs",
    "check_batch_size", "check_memory", "TrainState", "CheckpointError", "CheckpointWriteError", "fit", "RunResult",
    "Diverged", "shift_images", "METRICS", "evaluate", "activation_variances", "run", "resume", "run_config",
    "run_data", "check_same_data", "write_run", "DataMismatch",
]  # fmt: skip
