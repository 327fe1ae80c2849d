"""A training run that diverges stops, and never overwrites a good checkpoint with a broken one.

mmengine trains on through a NaN loss: the optimizer steps with NaN gradients, every weight
becomes NaN, the run exits 0 and ``epoch_1.pth`` holds NaN tensors (issue 17: lr 1e30 saved 218
of 312 tensors non-finite). :class:`NonFiniteGuardHook` (registered in mmengine's ``HOOKS``)::

    custom_hooks = [dict(type='NonFiniteGuardHook', policy='stop')]

* checks the loss of every step *before* the backward pass and the optimizer step (it wraps the
  runner's optimizer wrapper's ``update_params`` for the duration of ``train()``, on the
  instance only, and restores it afterwards);
* ``policy='stop'`` (default): the first non-finite loss ends the run with one
  :class:`NonFiniteLossError` naming the iteration, the loss, the learning rate, the likely
  causes and the last good checkpoint; the weights are those after the last good step;
* ``policy='skip'``: that step is skipped (no backward, no step) with a warning and a count;
  more than ``max_skips`` in a row is the same error (the run has diverged, not hit one bad batch);
* before any checkpoint is written (``before_save_checkpoint``, and at the end of each epoch
  before the checkpoint hook can delete an old checkpoint to make room) the model's tensors must
  be finite, else :class:`NonFiniteCheckpointError`: the broken file is never written and
  ``last_checkpoint`` keeps naming the last good one, the resume point.

In distributed runs every rank takes the same decision (the flag is all-reduced), so no rank
waits for a step the others skipped.
"""
from __future__ import annotations

import logging
import math
import os.path as osp
from typing import Iterable, List, Mapping, Optional, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log

__all__ = ["NonFiniteGuardHook", "NonFiniteLossError", "NonFiniteCheckpointError",
           "non_finite_tensors"]


class NonFiniteLossError(RuntimeError):
    """Training diverged: the loss is NaN or infinite (the message says where and why)."""


class NonFiniteCheckpointError(NonFiniteLossError):
    """A checkpoint whose weights are not finite; it was not written."""


def non_finite_tensors(state: Mapping) -> Tuple[List[str], int]:
    """Names of the floating-point tensors of ``state`` with a NaN or inf, and how many floating
    tensors it has."""
    bad, total = [], 0
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            total += 1
            if not bool(torch.isfinite(value).all()):
                bad.append(name)
    return bad, total


def _agreed(flag: bool, device) -> bool:
    """``flag`` of any rank (the all-reduced maximum) in a distributed run."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        t = torch.tensor(float(flag), device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())
    return flag


class NonFiniteGuardHook(Hook):
    """Stop (or skip the step) at a non-finite loss; never save non-finite weights.

    Args:
        policy: ``'stop'`` (default) or ``'skip'`` the step.
        max_skips: with ``'skip'``, this many non-finite steps in a row end the run.
    """

    priority = 'ABOVE_NORMAL'  # its epoch-end check runs before CheckpointHook (VERY_LOW)

    def __init__(self, policy: str = 'stop', max_skips: int = 10):
        if policy not in ('stop', 'skip'):
            raise ValueError(f"NonFiniteGuardHook: policy must be 'stop' or 'skip', got "
                             f"{policy!r}")
        if int(max_skips) < 1:
            raise ValueError(f"NonFiniteGuardHook: max_skips must be >= 1, got {max_skips!r}")
        self.policy, self.max_skips = policy, int(max_skips)
        self.skipped = 0  # steps skipped in this run
        self._in_a_row = 0
        self._wrapped: list = []

    # --- the loss, before each step -------------------------------------------------------------

    def before_train(self, runner) -> None:
        self.skipped, self._in_a_row = 0, 0
        for wrapper in self._optim_wrappers(runner.optim_wrapper):
            original = wrapper.update_params  # the bound method of its class

            def update_params(loss, *args, _original=original, _wrapper=wrapper, **kwargs):
                if self._check_loss(runner, _wrapper, loss):
                    return _original(loss, *args, **kwargs)
                return None

            wrapper.update_params = update_params  # this instance only, removed in after_train
            self._wrapped.append(wrapper)

    def after_train(self, runner) -> None:
        for wrapper in self._wrapped:
            wrapper.__dict__.pop('update_params', None)
        self._wrapped = []

    @staticmethod
    def _optim_wrappers(optim_wrapper) -> Iterable:
        # OptimWrapperDict (several optimizers, e.g. GANs) holds its wrappers in a dict.
        inner = getattr(optim_wrapper, 'optim_wrappers', None)
        return list(inner.values()) if isinstance(inner, Mapping) else [optim_wrapper]

    def _check_loss(self, runner, wrapper, loss: torch.Tensor) -> bool:
        """True to go on with the step; False to skip it; raises to stop."""
        finite = bool(torch.isfinite(loss.detach()).all())
        if not _agreed(not finite, loss.device):
            self._in_a_row = 0
            return True
        value = float(loss.detach().float().reshape(-1)[0]) if loss.numel() else math.nan
        if self.policy == 'skip' and self._in_a_row < self.max_skips:
            self._in_a_row += 1
            self.skipped += 1
            print_log(f'NonFiniteGuardHook: skipped iteration {runner.iter + 1}: the loss is '
                      f'{value}; skipped so far: {self.skipped}, {self._in_a_row} of them in a '
                      f'row ({self.max_skips} in a row stop the run)', logger='current',
                      level=logging.WARNING)
            return False
        in_a_row = (f' ({self._in_a_row + 1} steps in a row)' if self.policy == 'skip' else '')
        raise NonFiniteLossError(
            f'training diverged at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): the '
            f'loss is {value}{in_a_row}. Likely cause: a learning rate too high for this model '
            f'and batch size ({self._lr(wrapper)}; lower optim_wrapper.optimizer.lr or add a '
            f'warm-up), or bad data (a box of zero size, an image of NaNs: check the annotations '
            f'with mnet_backbone.mmdet_plugin.data_checks.check_coco). The weights were not '
            f'updated by this step; {self._resume_hint(runner)}')

    @staticmethod
    def _lr(wrapper) -> str:
        try:
            rates = [r for group in wrapper.get_lr().values() for r in group]
        except Exception:  # noqa: BLE001 (a wrapper without get_lr: say nothing about it)
            return 'learning rate unknown'
        return f'lr {max(rates):g} now' if rates else 'learning rate unknown'

    @staticmethod
    def _resume_hint(runner) -> str:
        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        last: Optional[str] = None
        if osp.isfile(pointer):
            with open(pointer) as f:
                last = f.read().strip() or None
        if last is None:
            return 'no checkpoint was written before it.'
        return (f'the last good checkpoint is {last}: resume from it (--resume) with a lower '
                f'learning rate.')

    # --- the weights, before each save ----------------------------------------------------------

    def _check_state(self, runner, states: Iterable[Tuple[str, Mapping]], when: str) -> None:
        for what, state in states:
            bad, total = non_finite_tensors(state)
            if bad:
                raise NonFiniteCheckpointError(
                    f'not saving a checkpoint {when}: {len(bad)} of the {total} tensors of the '
                    f'{what} are not finite (e.g. {", ".join(bad[:3])}): training diverged '
                    f'(a learning rate too high, or bad data). The broken weights were not '
                    f'written; {self._resume_hint(runner)}')

    def after_train_epoch(self, runner) -> None:
        # CheckpointHook (lower priority, runs after this) may delete the oldest checkpoint to
        # make room before it saves: stop before that if the weights are broken.
        model = getattr(runner.model, 'module', runner.model)
        self._check_state(runner, [('model', model.state_dict())],
                          f'after epoch {runner.epoch + 1}')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = [(key.replace('_', ' '), checkpoint[key])
                  for key in ('state_dict', 'ema_state_dict')
                  if isinstance(checkpoint.get(key), Mapping)]
        meta = checkpoint.get('meta') or {}
        self._check_state(runner, states, f"for epoch {meta.get('epoch', '?')}, iteration "
                                          f"{meta.get('iter', '?')}")
