"""Issue 17, training that diverges: a non-finite loss stops the run (or skips the step) with one
message naming the iteration and the likely cause; a non-finite checkpoint is never written and
the last good one stays the resume point. A tiny model on mmengine's own Runner."""
import math
import os

import pytest
import torch
from torch import nn

pytest.importorskip("mmengine")
from mmengine.dataset import default_collate
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mnet_backbone.openmmlab.guards import (NonFiniteCheckpointError,
                                               NonFiniteGuardHook, NonFiniteLossError,
                                               non_finite_tensors)
from mnet_backbone.weights.hub import load_checkpoint


class Tiny(BaseModel):
    """A linear regression; ``poison_epoch``: from that epoch on a buffer the loss never reads
    turns NaN (broken weights behind a finite loss)."""

    def __init__(self, poison_epoch=None):
        super().__init__()
        self.fc = nn.Linear(4, 1)
        self.register_buffer("stat", torch.zeros(1))
        self.poison_epoch, self.calls = poison_epoch, 0

    def forward(self, inputs, target=None, mode="loss"):
        self.calls += 1
        if self.poison_epoch is not None and self.calls > 4 * (self.poison_epoch - 1):
            self.stat.fill_(math.nan)
        out = self.fc(inputs)
        if mode == "loss":
            return dict(loss=((out - target) ** 2).mean())
        return out


class Data(torch.utils.data.Dataset):
    """8 samples (4 batches of 2 per epoch); ``nan_at``: samples whose input is NaN."""

    def __init__(self, nan_at=()):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(8, 4, generator=g), torch.randn(8, 1, generator=g)
        for i in nan_at:
            self.x[i] = math.nan

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=self.x[i], target=self.y[i])


def _runner(tmp_path, guard=None, lr=0.01, diverge_at_epoch=None, data=None, model=None,
            epochs=3):
    schedulers = ([dict(type="MultiStepLR", by_epoch=True, milestones=[diverge_at_epoch - 1],
                        gamma=1e32)] if diverge_at_epoch else [])
    return Runner(
        model=model or Tiny(), work_dir=str(tmp_path),
        train_dataloader=dict(dataset=data or Data(), batch_size=2, num_workers=0,
                              sampler=dict(type="DefaultSampler", shuffle=False),
                              collate_fn=default_collate),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=lr)),
        param_scheduler=schedulers or None,
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=1),
                           logger=dict(type="LoggerHook", interval=1)),
        custom_hooks=[guard] if guard else None,
        default_scope="mmengine", randomness=dict(seed=0), experiment_name=tmp_path.name,
        env_cfg=dict(dist_cfg=dict(backend="gloo")))


def _last(work_dir):
    with open(os.path.join(work_dir, "last_checkpoint")) as f:
        return f.read().strip()


def test_without_the_guard_a_diverging_run_saves_nan_weights(tmp_path):
    """The issue's row as it was (and the proof that this set-up diverges): lr 1e30 from epoch 2
    trains on and writes epoch_2.pth with non-finite weights."""
    _runner(tmp_path, diverge_at_epoch=2).train()
    saved = load_checkpoint(str(tmp_path / "epoch_2.pth"))["state_dict"]
    assert non_finite_tensors(saved)[0]


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    runner = _runner(tmp_path, dict(type="NonFiniteGuardHook"), diverge_at_epoch=2)
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    text = str(info.value)
    assert "\n" not in text
    assert "diverged at iteration" in text and "(epoch 2)" in text and "learning rate" in text
    assert "lr 1e+30" in text and "bad data" in text
    assert f"last good checkpoint is {tmp_path / 'epoch_1.pth'}" in text
    assert not (tmp_path / "epoch_2.pth").exists()  # nothing broken written
    assert _last(tmp_path) == str(tmp_path / "epoch_1.pth")
    good = load_checkpoint(str(tmp_path / "epoch_1.pth"))["state_dict"]
    assert non_finite_tensors(good) == ([], 3)
    # the step that saw the non-finite loss did not touch the weights
    assert non_finite_tensors(runner.model.state_dict())[0] == []


def test_skip_policy_skips_a_bad_batch_and_finishes(tmp_path):
    guard = NonFiniteGuardHook(policy="skip")
    runner = _runner(tmp_path, guard, data=Data(nan_at=(5,)), epochs=2)
    runner.train()
    assert guard.skipped == 2  # batch 3 of each epoch
    assert non_finite_tensors(load_checkpoint(str(tmp_path / "epoch_2.pth"))["state_dict"]) \
        == ([], 3)
    assert "update_params" not in vars(runner.optim_wrapper)  # the wrap is undone


def test_skip_policy_stops_a_run_that_stays_diverged(tmp_path):
    guard = NonFiniteGuardHook(policy="skip", max_skips=2)
    with pytest.raises(NonFiniteLossError, match=r"\(3 steps in a row\)"):
        _runner(tmp_path, guard, diverge_at_epoch=2).train()
    assert guard.skipped == 2 and not (tmp_path / "epoch_2.pth").exists()


def test_non_finite_weights_behind_a_finite_loss_are_not_saved(tmp_path):
    runner = _runner(tmp_path, dict(type="NonFiniteGuardHook"), model=Tiny(poison_epoch=2))
    with pytest.raises(NonFiniteCheckpointError) as info:
        runner.train()
    assert "1 of the 3 tensors of the model are not finite (e.g. stat)" in str(info.value)
    assert not (tmp_path / "epoch_2.pth").exists()
    assert _last(tmp_path) == str(tmp_path / "epoch_1.pth")
    # the save path itself refuses too (e.g. a checkpoint saved by another hook)
    guard = NonFiniteGuardHook()
    with pytest.raises(NonFiniteCheckpointError, match="for epoch 2, iteration 8"):
        guard.before_save_checkpoint(runner, dict(meta=dict(epoch=2, iter=8),
                                                  state_dict=dict(w=torch.tensor([math.inf]))))


def test_bad_arguments():
    with pytest.raises(ValueError, match="'stop' or 'skip'"):
        NonFiniteGuardHook(policy="ignore")
    with pytest.raises(ValueError, match="max_skips"):
        NonFiniteGuardHook(max_skips=0)
