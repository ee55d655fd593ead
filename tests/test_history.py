"""The per-epoch bookkeeping (plain numpy): histories, divergence, the schedule record."""

from __future__ import annotations

import math

import numpy as np

from jaxcnn.training import history as hist


def test_record_epoch_keeps_the_means_and_every_100th_step():
    h = hist.empty_history()
    losses = np.linspace(2.3, 1.0, 250)
    assert not hist.record_epoch(h, 1, losses, 1.5, 45.0)
    assert h["train_loss"] == [losses.mean()]
    assert h["train_step_loss"] == [losses[99], losses[199]]
    assert h["val_loss"] == [1.5] and h["val_accuracy"] == [45.0]
    assert h["diverged_epoch"] is None


def test_short_epochs_record_about_ten_step_losses_each():
    """Below 100 steps an epoch still has a step curve (it had none), and the steps the
    plots put under it are the steps recorded."""
    assert hist.step_loss_every(704) == 100 and hist.step_loss_every(100) == 100
    assert hist.step_loss_every(99) == 9 and hist.step_loss_every(7) == 1
    h = hist.empty_history()
    for epoch in (1, 2):
        hist.record_epoch(h, epoch, np.arange(7.0) + 10 * epoch, 1.5, 45.0)
    assert h["train_step_loss"] == [*(np.arange(7.0) + 10), *(np.arange(7.0) + 20)]
    assert hist.step_loss_steps(7, 2) == list(range(1, 15))
    h = hist.empty_history()
    hist.record_epoch(h, 1, np.arange(45.0), 1.5, 45.0)
    assert h["train_step_loss"] == [3.0, 7.0, 11.0, 15.0, 19.0, 23.0, 27.0, 31.0, 35.0, 39.0,
                                    43.0]
    assert hist.step_loss_steps(45, 1) == [4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44]


def test_divergence_is_flagged_once_and_stored_as_null():
    h = hist.empty_history()
    assert hist.record_epoch(h, 1, np.array([2.3, np.nan, 2.0]), 2.0, 10.0)
    assert not hist.record_epoch(h, 2, np.array([np.inf, 1.0]), np.nan, 10.0)
    assert h["diverged_epoch"] == 1  # the first epoch it happened in
    assert h["train_loss"] == [None, None] and h["val_loss"] == [2.0, None]
    assert h["val_accuracy"] == [10.0, None]  # no accuracy without a finite loss
    huge = hist.empty_history()
    assert hist.record_epoch(huge, 1, np.array([2.3, 2e4]), 2.0, 10.0)  # finite but blown up
    assert hist.is_healthy(np.array([2.3, 1e4]), 2.0)


def test_member_record_hides_diverged_test_numbers():
    h = hist.empty_history()
    hist.record_epoch(h, 1, np.array([2.0]), 1.9, 30.0)
    record = hist.member_record(3, "abc", h, 1.8, 33.5)
    assert record["test_accuracy"] == 33.5 and record["seed"] == 3
    assert set(record["history"]) == set(hist.HISTORY_KEYS)
    nan_at_test = hist.member_record(3, "abc", h, math.nan, 10.0)
    # Non-finite at the test although every epoch was healthy: diverged in its last epoch,
    # so the statistics count it at chance rather than silently leave it out.
    assert nan_at_test["test_accuracy"] is None and nan_at_test["diverged_epoch"] == 1
    own = hist.member_record(3, "abc", h, 1.8, 33.5, test_metric=math.inf)
    assert own["diverged_epoch"] == 1 and own["test_metric"] is None


def test_schedule_record_keeps_epoch_ends_every_100th_and_a_stride():
    steps_per_epoch = 250
    assert hist.schedule_stride(500) == 2 and hist.schedule_stride(40) == 1
    record = None
    for epoch in range(2):
        lr = np.arange(steps_per_epoch) + 1000.0 * epoch
        record = hist.schedule_record(record, epoch, lr, lr / 1e4, stride=50)
    assert record["step"] == [1, 50, 100, 150, 200, 250, 251, 300, 350, 400, 450, 500]
    assert record["learning_rate"][:2] == [0.0, 49.0]  # value applied at step k: index k-1
    assert record["learning_rate"][6] == 1000.0  # first step of epoch 2
    assert hist.step_loss_steps(250, 2) == [100, 200, 350, 450]


def test_steps_per_epoch_of_a_results_file():
    meta = {"data": {"train_examples": 45000}, "settings": {"batch_size": 64}}
    assert hist.steps_per_epoch_of(meta) == 704
