"""The Runner of this package's configs: checkpoints that survive a kill, a resume that skips a
broken newest checkpoint, and hook / loop settings checked before any work starts.

The configs select it with ``runner_type = 'CheckedRunner'`` (``configs/_base_/
default_runtime.py``), the mmengine way to choose a Runner, so mmdet's and mmpretrain's own
``tools/train.py`` / ``test.py`` build it as this package's ``tools/train.py`` does. What
mmengine 0.10.7 does, and what changes:

* **Saves**: ``Runner.save_checkpoint`` writes ``epoch_N.pth`` in place (``LocalBackend.put``
  opens the final name), so ``kill -9`` mid-write leaves a truncated file that ``--resume`` dies
  on. :meth:`CheckedRunner.save_checkpoint` has mmengine write the same checkpoint to
  ``epoch_N.pth.<pid>-<random>.partial`` in the same folder (:func:`mnet_backbone.files.
  atomic_path`), fsyncs it and renames it into place. ``CheckpointHook`` writes
  ``last_checkpoint`` only after ``save_checkpoint`` returns, so it names complete files only.
  Non-local folders (``backend_args``, ``s3://``) are saved as mmengine saves them.
* **max_keep_ckpts**: ``CheckpointHook`` deletes the oldest kept checkpoint *before* it writes
  the new one; with ``max_keep_ckpts=1`` that is the resume point. The runner builds a plain
  ``CheckpointHook`` config as :class:`SafeCheckpointHook`, which deletes it once the new file is
  in place.
* **Resume** (``resume=True``, no file; ``tools/train.py --resume``): the newest *readable* of
  the file ``last_checkpoint`` names and the ``epoch_N.pth`` / ``iter_N.pth`` beside it; each
  unreadable one is skipped with one warning naming it. An explicit file (``--resume PATH``)
  that cannot be read is one :class:`UnreadableCheckpointError`.
* **Partial files** of saves that were killed are removed when training starts.
* **Checkpoints that do not fit**: mmengine loads ``load_from`` and ``--resume`` checkpoints with
  ``strict=False`` and only logs the tensors that do not fit, so ``tools/test.py`` with another
  ``model.backbone.alpha`` scores random weights (mAP 0.002) and ``load_from`` a checkpoint of
  another width trains from scratch. :meth:`CheckedRunner.load_checkpoint` checks the fit once
  the ``after_load_checkpoint`` hooks have seen the checkpoint (the classification face renames
  keys there) and before it loads (:func:`mnet_backbone.state_dicts.check_state_dict`): every
  weight must fit to test, validate or resume; ``load_from`` for training may leave a part anew
  (fine-tuning on another number of classes), but not most of the model
  (:data:`FINE_TUNE_MIN_FIT`).
* **Hook and loop settings** (``default_hooks``, ``custom_hooks``, ``train_cfg``, ``val_cfg``,
  ``test_cfg``): a key the class does not take (``default_hooks.checkpoint.intervl=1``) is one
  :class:`ConfigKeyError` when the runner is built, naming the closest valid key; mmengine
  accepts it and fails with a ``TypeError`` at the first save, after the training before it.
"""
from __future__ import annotations

import difflib
import inspect
import os
import os.path as osp
import re
from collections import deque
from typing import Dict, Iterator, List, Optional, Tuple

from mmengine.dist import is_main_process, master_only
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS, LOOPS
from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop, Runner, TestLoop,
                             ValLoop)
from mmengine.runner.checkpoint import _load_checkpoint, _load_checkpoint_to_model

from ..files import atomic_path, clean_stale_partials
from ..state_dicts import check_state_dict, checkpoint_state_dict
from ..weights.hub import UnreadableCheckpointError

__all__ = ["CheckedRunner", "SafeCheckpointHook", "ConfigKeyError", "check_hook_and_loop_keys",
           "resume_candidates", "FINE_TUNE_MIN_FIT"]

# A training run's load_from must fit at least this share of the model's weights: a new head
# (another number of classes) is fine-tuning; another width leaves nearly all of it random.
FINE_TUNE_MIN_FIT = 0.5


class ConfigKeyError(ValueError):
    """A hook or loop setting its class does not take (the message names the closest one)."""


# --- hook and loop settings ---------------------------------------------------------------------

# What the Runner passes itself when it builds a loop, and what register_hook pops.
_SUPPLIED = {'self', 'runner', 'dataloader', 'evaluator'}
_HOOK_KEYS = ('type', 'priority')
# CheckpointHook keeps keys it does not know and passes them to Runner.save_checkpoint at every
# save (mmengine 0.10.7, CheckpointHook._save_checkpoint_with_step), next to these:
_SAVE_ARGS_PASSED = {'self', 'out_dir', 'filename', 'file_client_args', 'save_optimizer',
                     'save_param_scheduler', 'meta', 'by_epoch', 'backend_args'}
# Loop configs without a type, as Runner.build_{train,val,test}_loop build them.
_DEFAULT_LOOPS = {'val_cfg': ValLoop, 'test_cfg': TestLoop}


def _settings(cls, runner_cls) -> Optional[List[str]]:
    """The keys a config dict of ``cls`` may hold; None when its ``__init__`` takes any."""
    params = list(inspect.signature(cls.__init__).parameters.values())
    names = [p.name for p in params if p.name not in _SUPPLIED
             and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if not any(p.kind is p.VAR_KEYWORD for p in params):
        return names
    if cls.__init__ is CheckpointHook.__init__:  # its **kwargs go to save_checkpoint
        return names + [n for n, p in inspect.signature(runner_cls.save_checkpoint)
                        .parameters.items()
                        if n not in _SAVE_ARGS_PASSED and p.kind is not p.VAR_KEYWORD]
    return None  # **kwargs with a use we cannot know


def _configs(default_hooks, custom_hooks, loops) -> Iterator[Tuple[str, dict, object, tuple]]:
    """(where, config dict, registry, keys the builder itself takes) of each hook and loop."""
    for name, hook in (default_hooks or {}).items():
        yield f'default_hooks.{name}', hook, HOOKS, _HOOK_KEYS
    for i, hook in enumerate(custom_hooks or []):
        yield f'custom_hooks.{i}', hook, HOOKS, _HOOK_KEYS
    for name, loop in loops.items():
        if isinstance(loop, dict) and 'type' not in loop:
            if name == 'train_cfg':  # by_epoch picks the loop and is popped
                cls = EpochBasedTrainLoop if loop.get('by_epoch', True) else IterBasedTrainLoop
                loop = dict(loop, type=cls)
                yield name, loop, LOOPS, ('type', 'by_epoch')
                continue
            if name in _DEFAULT_LOOPS:
                loop = dict(loop, type=_DEFAULT_LOOPS[name])
        yield name, loop, LOOPS, ('type',)


def check_hook_and_loop_keys(default_hooks=None, custom_hooks=None, loops=None,
                             scope: Optional[str] = None, runner_cls=Runner) -> None:
    """Raise :class:`ConfigKeyError` listing each hook / loop config key its class does not take
    (one line each, with the closest valid key). Hooks and loops given as objects, types not in
    the registry (mmengine reports those itself) and classes taking ``**kwargs`` pass."""
    problems = []
    for where, cfg, registry, own in _configs(default_hooks, custom_hooks, loops or {}):
        if not isinstance(cfg, dict):
            continue
        cls = cfg.get('type')
        if isinstance(cls, str):
            with registry.switch_scope_and_registry(scope) as scoped:
                cls = scoped.get(cls)
        if not inspect.isclass(cls):
            continue
        valid = _settings(cls, runner_cls)
        if valid is None:
            continue
        for key in cfg:
            if key in own or key in valid:
                continue
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ''
            problems.append(f'{where}: {cls.__name__} has no setting {key!r}{hint}; its '
                            f'settings: {", ".join(valid)}')
    if problems:
        raise ConfigKeyError('\n'.join(problems))


# --- resume -------------------------------------------------------------------------------------

_STEP = re.compile(r'^(?:epoch|iter)_(\d+)\.pth$')


def _pointer(work_dir: str) -> Optional[str]:
    """The file ``last_checkpoint`` names; None when there is none or it is empty (a kill while
    CheckpointHook rewrote it in place)."""
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def resume_candidates(work_dir: str) -> List[str]:
    """The checkpoints to resume from, best first: the file ``last_checkpoint`` names, then the
    ``epoch_N.pth`` / ``iter_N.pth`` beside it and in ``work_dir``, highest N first."""
    last = _pointer(work_dir)
    folders = {osp.normpath(work_dir): work_dir}
    if last:
        folders.setdefault(osp.normpath(osp.dirname(last) or '.'), osp.dirname(last))
    found: Dict[str, Tuple[Tuple[int, float], str]] = {}
    for folder in folders.values():
        try:
            names = os.listdir(folder or '.')
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            step = _STEP.match(name)
            path = osp.join(folder, name)
            if step and osp.isfile(path):
                found[osp.normpath(path)] = ((int(step.group(1)), osp.getmtime(path)), path)
    ordered = [path for _, path in sorted(found.values(), key=lambda v: v[0], reverse=True)]
    if last and osp.isfile(last):
        ordered = [last] + [p for p in ordered if osp.normpath(p) != osp.normpath(last)]
    return ordered


# --- the hook and the runner --------------------------------------------------------------------

class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that deletes a checkpoint beyond ``max_keep_ckpts`` only
    after the new one is in place, and removes the partial files of killed saves at the start.
    :class:`CheckedRunner` builds every plain ``CheckpointHook`` config as this class."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        removed = []
        for folder in {runner.work_dir, self.out_dir}:
            if '://' not in str(folder):
                # This run's main process is the only writer here: a partial file whose writer
                # is gone is what a killed save left, whatever its age.
                removed += clean_stale_partials(str(folder), dead_writers=True)
        if removed:
            runner.logger.warning(f'removed {len(removed)} partial file(s) of interrupted saves: '
                                  f'{", ".join(removed)}')

    def _save_checkpoint_with_step(self, runner, step, meta):
        keep = self.max_keep_ckpts
        if keep <= 0 or len(self.keep_ckpt_ids) < keep or self.keep_ckpt_ids[-1] == step:
            return super()._save_checkpoint_with_step(runner, step, meta)
        # mmengine would delete the oldest kept checkpoint now, before the save: let it keep one
        # more for the duration of the save, then delete that one.
        before = list(self.keep_ckpt_ids)
        self.max_keep_ckpts = keep + 1
        self.keep_ckpt_ids = deque(before, keep + 1)
        try:
            super()._save_checkpoint_with_step(runner, step, meta)
        except BaseException:
            self.keep_ckpt_ids = deque(before, keep)
            runner.message_hub.update_info('keep_ckpt_ids', before)
            raise
        finally:
            self.max_keep_ckpts = keep
        self.keep_ckpt_ids = deque(self.keep_ckpt_ids, keep)  # drops the oldest
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        if is_main_process():
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(before[0]))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # deepspeed saves folders
                self.file_backend.rmtree(path)


class CheckedRunner(Runner):
    """mmengine's ``Runner`` with atomic checkpoint saves, a resume that skips unreadable
    checkpoints, checkpoints checked to fit the model before they load, and hook / loop settings
    checked when it is built (see the module docstring)."""

    _evaluating = False  # in test() / val(): every weight must load

    def __init__(self, *args, **kwargs):
        given = inspect.signature(Runner.__init__).bind(self, *args, **kwargs).arguments
        check_hook_and_loop_keys(
            given.get('default_hooks'), given.get('custom_hooks'),
            {name: given.get(name) for name in ('train_cfg', 'val_cfg', 'test_cfg')},
            scope=given.get('default_scope', 'mmengine'), runner_cls=type(self))
        super().__init__(*args, **kwargs)

    def register_hook(self, hook, priority=None) -> None:
        if isinstance(hook, dict):
            cls = hook.get('type')
            if isinstance(cls, str):
                scope = getattr(self.default_scope, 'scope_name', None)
                with HOOKS.switch_scope_and_registry(scope) as scoped:
                    cls = scoped.get(cls)
            if cls is CheckpointHook:
                hook = dict(hook, type=SafeCheckpointHook)
        super().register_hook(hook, priority)

    @master_only
    def save_checkpoint(self, out_dir, filename, file_client_args=None, save_optimizer=True,
                        save_param_scheduler=True, meta=None, by_epoch=True, backend_args=None):
        if file_client_args is not None or backend_args is not None or '://' in str(out_dir):
            return super().save_checkpoint(out_dir, filename, file_client_args, save_optimizer,
                                           save_param_scheduler, meta, by_epoch, backend_args)
        with atomic_path(osp.join(out_dir, filename)) as tmp:
            super().save_checkpoint(osp.dirname(tmp), osp.basename(tmp),
                                    save_optimizer=save_optimizer,
                                    save_param_scheduler=save_param_scheduler, meta=meta,
                                    by_epoch=by_epoch)

    def test(self) -> dict:
        return self._evaluate(super().test)

    def val(self) -> dict:
        return self._evaluate(super().val)

    def _evaluate(self, run):
        self._evaluating = True
        try:
            return run()
        finally:
            self._evaluating = False

    def load_checkpoint(self, filename, map_location='cpu', strict=False,
                        revise_keys=[(r'^module.', '')]):  # noqa: B006 (mmengine's signature)
        """mmengine 0.10.7's ``Runner.load_checkpoint`` with the fit check between the
        ``after_load_checkpoint`` hooks and the load (mmengine only logs what does not fit)."""
        checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) else self.model
        partial_ok = not (strict or self._resume or self._evaluating)
        check_state_dict(model, checkpoint_state_dict(checkpoint, filename, revise_keys),
                         filename, min_fit=FINE_TUNE_MIN_FIT if partial_ok else 1.0)
        checkpoint = _load_checkpoint_to_model(model, checkpoint, strict,
                                               revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    def load_or_resume(self) -> None:
        if self._has_loaded or not self._resume:
            return super().load_or_resume()
        if self._load_from is not None:
            try:
                self.resume(self._load_from)
            except UnreadableCheckpointError as exc:
                raise UnreadableCheckpointError(
                    f'cannot resume: {exc}. Resume from another checkpoint, or resume without a '
                    f'file (tools/train.py --resume) to start from the newest readable one in '
                    f'{self.work_dir}') from None
            return None
        last = _pointer(self.work_dir)
        if last and not osp.isfile(last):
            self.logger.warning(f'resume: last_checkpoint names {last}, which does not exist')
        candidates = resume_candidates(self.work_dir)
        for path in candidates:
            try:
                self.resume(path)  # an unreadable file fails before anything is changed
            except UnreadableCheckpointError as exc:
                self.logger.warning(f'resume: skipped an unreadable checkpoint: {exc}; trying '
                                    f'the one before it')
                continue
            self.logger.info(f'Auto resumed from the newest readable checkpoint {path}.')
            return None
        if candidates:
            raise UnreadableCheckpointError(
                f'cannot resume: none of the {len(candidates)} checkpoints in {self.work_dir} '
                f'can be read ({", ".join(osp.basename(p) for p in candidates)}); delete them to '
                f'train from the start, or resume from a good copy (--resume PATH)')
        self.logger.info(f'resume: no checkpoint in {self.work_dir}; training from the start.')
        return None
