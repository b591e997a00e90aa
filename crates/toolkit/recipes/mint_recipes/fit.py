"""The one training loop every model of this project is trained with: the audited models
(mint_research.train_audited, train_vit, train_lm) and the MINT heads (train_head,
train_cnn_head). What differs between them is passed in: the batches of an epoch, the loss of
a batch, and what to do after each epoch (validation, early stopping, a log line).

The loop's order of operations is fixed (train mode; the epoch's batches drawn; per batch: the
loss, zero_grad, backward, step, the scheduler's step), so a seeded run gives the same weights
whichever script drives it.
"""

from collections.abc import Callable, Iterable
from typing import Protocol

import torch


class Scheduler(Protocol):
    """A learning-rate scheduler stepped after every batch (torch's `OneCycleLR`, say)."""

    def step(self) -> None: ...


def fit(
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    epochs: int,
    batches: Callable[[], Iterable[torch.Tensor]],
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    sched: Scheduler | None = None,
    after_epoch: Callable[[int, float], bool] | None = None,
) -> int:
    """Trains `model` for at most `epochs` epochs; returns the epochs run.

    `batches()` gives one epoch's batches (index tensors, drawn when the epoch starts);
    `loss_of(batch)` the loss to minimise; `after_epoch(epoch, mean_loss)` (epoch counted from
    1, the mean of the batches' losses weighted by their sizes) returns True to stop early.
    """
    for epoch in range(epochs):
        model.train()
        total, seen = 0.0, 0
        for batch in batches():
            loss = loss_of(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            total += loss.item() * len(batch)
            seen += len(batch)
        if after_epoch is not None and after_epoch(epoch + 1, total / max(seen, 1)):
            return epoch + 1
    return epochs


def shuffled_batches(n: int, batch: int, gen: torch.Generator) -> Iterable[torch.Tensor]:
    """The positions 0..n in a random order, `batch` at a time (the last one shorter)."""
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch):
        yield perm[i : i + batch]


def balanced_batches(n_pos: int, n_neg: int, batch: int, gen: torch.Generator) -> Iterable[torch.Tensor]:
    """Batches with as many members (rows 0..n_pos) as non-members (the rows after them), the
    smaller class cycled (the MINT paper's batching)."""
    half = batch // 2
    pos = torch.randperm(n_pos, generator=gen)
    neg = torch.randperm(n_neg, generator=gen) + n_pos
    steps = max(n_pos, n_neg) // half
    for s in range(max(steps, 1)):
        p = pos[torch.arange(s * half, (s + 1) * half) % n_pos]
        q = neg[torch.arange(s * half, (s + 1) * half) % n_neg]
        yield torch.cat([p, q])
