"""The one training loop: epochs of minibatch steps, the thread policy, the progress bar, early stopping.

Every trainer of hashplug (the plasticity rule, the minibatch objectives of MIHash / DPSH /
AngularDistillHash and of torch backbones, NeuroHash's two stages, the digit CNN) runs its epochs here and
brings only its own parts:

- ``batches(epoch)``: the epoch's minibatches, drawn when the epoch starts (:func:`permutation_batches`
  for the usual shuffled walk, or the trainer's own, e.g. MIHash's neighbour groups);
- ``step(epoch, batch)``: one update, returning what to record (:class:`Step`: sums over the minibatch and
  their weight) or None;
- optionally ``end_epoch(epoch, record)`` (a learning-rate schedule, a snapshot), ``postfix(record)`` (what
  the progress bar shows) and :class:`EarlyStop`.

The loop owns the rest: the epoch count, torch's intra-op threads (:func:`hashplug._torch.torch_threads`,
re-chosen between steps under ``"auto"``), the progress bar (``tqdm``, shown when ``verbose``), the
per-epoch means (``sum of values / sum of weights``, accumulated in step order) and the stop. It draws no
random numbers and changes no value a trainer computes, so a trainer moved onto it trains bit-identically.
Device placement is the trainer's (its tensors and :func:`permutation_batches`' ``device``).

torch is imported inside the functions (training side only).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._torch import RECHECK_SECONDS, ThreadPolicy, torch_threads
from ..validation import HashplugError

__all__ = ["Step", "EarlyStop", "permutation_batches", "run_epochs"]


@dataclass(frozen=True)
class Step:
    """What one minibatch step reports.

    Parameters
    ----------
    values : mapping of str to float
        Sums over the minibatch of each recorded quantity (a per-batch mean counts as a sum over a batch of
        weight 1; a per-sample mean times the batch size is the sum over its samples).
    weight : float
        What the sums are sums over (1 for one batch, or the batch's sample count). The epoch's record is
        ``sum(values) / max(sum(weight), 1)`` per quantity.
    """

    values: Mapping[str, float]
    weight: float = 1.0


@dataclass
class EarlyStop:
    """Stop when ``monitor`` of the epoch records has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str
        A key of the epoch records (e.g. ``"mi"``, ``"loss"``).
    patience : int
        Epochs without improvement that are tolerated (>= 1).
    mode : {"max", "min"}
        Whether larger (an objective) or smaller (a loss) is better.
    min_delta : float
        The least change that counts as an improvement (>= 0).

    Attributes
    ----------
    best : float or None
        The best value so far.
    stopped_epoch : int or None
        The epoch after which training stopped, or None.
    """

    monitor: str
    patience: int = 3
    mode: str = "max"
    min_delta: float = 0.0
    best: float | None = field(default=None, init=False)
    stopped_epoch: int | None = field(default=None, init=False)
    _wait: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise HashplugError(f"EarlyStop mode={self.mode!r} must be 'max' or 'min'.")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise HashplugError(f"EarlyStop patience={self.patience!r} must be an int >= 1.")
        if not math.isfinite(float(self.min_delta)) or float(self.min_delta) < 0:
            raise HashplugError(f"EarlyStop min_delta={self.min_delta!r} must be a finite number >= 0.")

    def __call__(self, epoch: int, record: Mapping[str, float]) -> bool:
        """Whether to stop after ``epoch``, whose record is ``record``."""
        if self.monitor not in record:
            raise HashplugError(
                f"EarlyStop monitors {self.monitor!r}, which the trainer does not record; it records {sorted(record)}."
            )
        value = float(record[self.monitor])
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > float(self.min_delta):
            self.best, self._wait = value, 0
            return False
        self._wait += 1
        if self._wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False


def permutation_batches(
    n: int, batch_size: int, rng: np.random.Generator, *, device: Any = None, drop_last: bool = False
) -> Callable[[int], Iterable[Any]]:
    """``batches(epoch)`` of :func:`run_epochs`: a fresh ``rng.permutation(n)`` per epoch walked in slices.

    Parameters
    ----------
    n, batch_size : int
        Rows and rows per minibatch.
    rng : numpy.random.Generator
        Drawn once per epoch, when the epoch starts.
    device : torch device, str or None
        None: numpy index arrays. Otherwise the permutation is one torch tensor on ``device`` and the
        minibatches are its slices.
    drop_last : bool
        Walk full minibatches only (the last ``n % batch_size`` rows of the permutation are left out).
    """
    n, size = int(n), int(batch_size)
    stop = n - size + 1 if drop_last else n

    def batches(epoch: int) -> Iterable[Any]:
        perm = rng.permutation(n)
        if device is not None:
            import torch

            perm = torch.as_tensor(perm, device=device)
        return [perm[s : s + size] for s in range(0, stop, size)]

    return batches


def run_epochs(
    step: Callable[[int, Any], Step | None],
    batches: Callable[[int], Iterable[Any]],
    *,
    epochs: int,
    desc: str,
    verbose: bool = False,
    threads: ThreadPolicy | int | str | None = None,
    recheck: float | None = RECHECK_SECONDS,
    metrics: Sequence[str] = (),
    end_epoch: Callable[[int, dict[str, float]], None] | None = None,
    postfix: Callable[[dict[str, float]], Mapping[str, str]] | None = None,
    early_stop: EarlyStop | None = None,
) -> list[dict[str, float]]:
    """Run ``epochs`` epochs of ``step`` over ``batches``; returns one record per epoch run.

    Parameters
    ----------
    step : callable
        ``step(epoch, batch) -> Step | None``: one update on one minibatch.
    batches : callable
        ``batches(epoch) -> iterable``: the epoch's minibatches, called when the epoch starts.
    epochs : int
        Epochs to run (fewer when ``early_stop`` stops).
    desc : str
        The progress bar's label.
    verbose : bool
        Show the progress bar (one tick per epoch).
    threads : ThreadPolicy, int, "auto" or None
        torch's intra-op threads during training (:func:`hashplug._torch.torch_threads`; restored afterwards).
        A :class:`~hashplug._torch.ThreadPolicy` built by the caller (e.g. to check the setting before other
        work) is used as is.
    recheck : float or None
        Seconds between re-choices of an ``"auto"`` count (ticked before every step); None: chosen once.
    metrics : sequence of str
        Quantities every record holds (0.0 when no step reported them), in this order before any other.
    end_epoch : callable, optional
        ``end_epoch(epoch, record)`` after each epoch (before the progress bar and the stop rule).
    postfix : callable, optional
        ``postfix(record) -> {name: text}`` shown on the progress bar after each epoch.
    early_stop : EarlyStop, optional
        Asked after each epoch; True ends training.

    Returns
    -------
    records : list of dict
        Per epoch, ``sum(values) / max(sum(weights), 1)`` of every quantity the steps reported.
    """
    from tqdm.auto import tqdm

    policy = threads if isinstance(threads, ThreadPolicy) else torch_threads(threads, recheck=recheck)
    records: list[dict[str, float]] = []
    bar = tqdm(range(int(epochs)), desc=desc, disable=not verbose, leave=False)
    with policy:
        for epoch in bar:
            sums = dict.fromkeys(metrics, 0.0)
            count = 0.0
            for batch in batches(epoch):
                policy.tick()
                out = step(epoch, batch)
                if out is None:
                    continue
                for key, value in out.values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += out.weight
            record = {key: value / max(count, 1) for key, value in sums.items()}
            records.append(record)
            if end_epoch is not None:
                end_epoch(epoch, record)
            if postfix is not None:
                bar.set_postfix(postfix(record))
            if early_stop is not None and early_stop(epoch, record):
                break
    return records
