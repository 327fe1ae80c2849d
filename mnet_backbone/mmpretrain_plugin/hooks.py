"""Runner hooks of the classification configs (``configs/_base_/cls_runtime.py``): what
mmpretrain's Runner setup lacks for this package's weights and for a clear class-count error."""
import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from ..openmmlab.pretrained import SCHEME
from ..state_dicts import Misfit, check_state_dict
from ..weights import IncompatibleWeightsError, apply_model_kwargs, locate
from ..weights.load import load
from .backbone import core_to_classifier_keys
from .data import ClassificationDataError

__all__ = ['BackboneSettingsHook', 'ClsNumClassesCheckHook']


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


def _weights_settings(meta: dict):
    """(model settings, description) recorded in a checkpoint's meta, or (None, None)."""
    if not isinstance(meta, dict):
        return None, None
    if isinstance(meta.get('backbone_settings'), dict):  # saved by this hook
        return meta['backbone_settings'], 'the checkpoint'
    mnet = meta.get('mnet_backbone')
    if isinstance(mnet, dict) and isinstance(mnet.get('model_kwargs'), dict):  # mnet:// loader
        return mnet['model_kwargs'], mnet.get('weights', 'the weights')
    if meta.get('format') == 'mnet_backbone':  # tools/convert_weights.py output
        return meta.get('model_kwargs') or {}, f"converted {meta.get('source', '')} weights"
    return None, None


def _classes_misfit(misfit: Misfit):
    """The classifier's error for another class count; any other misfit passes here (another
    width: the backbone's own check names alpha when the weights load)."""
    fc = next(((theirs, own) for key, theirs, own in misfit.shapes if key == 'head.fc.weight'),
              None)
    if fc is None or fc[0][1:] != fc[1][1:]:
        return None
    theirs, own = fc
    n = theirs[0]
    return IncompatibleWeightsError(
        f'the checkpoint\'s classifier has {n} classes but the model has '
        f'model.head.num_classes={own[0]} (head.fc.weight: checkpoint {theirs}, model {own}). '
        f'Set model.head.num_classes={n} to use its classifier, or load only its backbone for a '
        f"new classifier: model.backbone.init_cfg=dict(type='Pretrained', checkpoint=..., "
        f"prefix='backbone.') for a classifier checkpoint, or checkpoint='mnet://...' for "
        f"ImageNet weights")


def _check_num_classes(model, state_dict: dict) -> None:
    check_state_dict(model, state_dict, 'the checkpoint', strict=False, explain=_classes_misfit)


class BackboneSettingsHook(Hook):
    """Keep a MobileNetV1 backbone's padding and BN eps with the weights it runs.

    Google's (Keras/TF-slim) weights need TF "SAME" padding and BN eps 1e-3, timm's do not.
    The backbone's ``init_cfg`` switches the model when it loads them, but ``load_from`` and
    ``tools/test.py`` load checkpoints without ``init_weights``, so this hook

    * records the backbone's ``tf_padding`` / ``bn_eps`` in every checkpoint the Runner saves;
    * before a checkpoint is loaded, switches the backbone to the settings recorded in it
      (its own record, an ``mnet://`` entry's or a converted file's), logging what changed;
    * for ``load_from='mnet://<entry or file>'`` (which carries the backbone only) adds the
      weights' ImageNet classifier when ``model.head.num_classes`` equals its class count, so
      ``tools/test.py CONFIG mnet://keras_1.0_224`` evaluates the released model; otherwise it
      logs that the head stays newly initialised (fine-tuning);
    * renames core-layout checkpoints to the classifier's keys and stops, naming the setting to
      change, when the checkpoint's classifier has another class count (mmengine would log the
      mismatch and go on with an untrained head).
    """

    priority = 'VERY_HIGH'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        backbone = getattr(_model(runner), 'backbone', None)
        if backbone is None or not hasattr(backbone, 'tf_padding'):
            return
        norms = [m for m in backbone.modules() if hasattr(m, 'running_var') and hasattr(m, 'eps')]
        settings = dict(tf_padding=bool(backbone.tf_padding))
        if norms:
            settings['bn_eps'] = float(norms[0].eps)
        checkpoint.setdefault('meta', {})['backbone_settings'] = settings

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = _model(runner)
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            return
        settings, what = _weights_settings(checkpoint.get('meta'))
        if settings:
            changed = apply_model_kwargs(backbone, settings, what, warn=False)
            if changed:
                print_log(f'BackboneSettingsHook: {what} need {", ".join(changed)}; switched the '
                          f'backbone to them', logger='current', level=logging.WARNING)
        self._add_imagenet_classifier(runner, model, checkpoint)
        state_dict = checkpoint.get('state_dict')
        if isinstance(state_dict, dict):
            core_to_classifier_keys(state_dict)
            _check_num_classes(model, state_dict)

    @staticmethod
    def _add_imagenet_classifier(runner, model, checkpoint: dict) -> None:
        load_from = str(runner.cfg.get('load_from') or '')
        meta = checkpoint.get('meta') or {}
        state_dict = checkpoint.get('state_dict')
        head = getattr(model, 'head', None)
        if (not load_from.startswith(SCHEME) or 'mnet_backbone' not in meta or head is None
                or not isinstance(state_dict, dict)
                or any(k.startswith('fc.') for k in state_dict)):
            return
        target = load_from[len(SCHEME):]
        loaded = load(locate(target))
        what = loaded.description
        fc = {k: v for k, v in loaded.state_dict.items() if k.startswith('fc.')}
        if not fc:
            print_log(f'BackboneSettingsHook: {what} have no classifier; model.head stays newly '
                      f'initialised', logger='current', level=logging.WARNING)
            return
        n = fc['fc.weight'].shape[0]
        if n != head.num_classes:
            print_log(f'BackboneSettingsHook: loading the backbone of {what}; their {n}-class '
                      f'classifier does not fit model.head.num_classes={head.num_classes}, so '
                      f'the head stays newly initialised (fine-tuning)', logger='current',
                      level=logging.WARNING)
            return
        state_dict.update(fc)
        print_log(f'BackboneSettingsHook: loading {what} with their {n}-class classifier',
                  logger='current')


class ClsNumClassesCheckHook(Hook):
    """Stop with a clear message when a data set's class count differs from the head's."""

    def _check(self, runner, split: str) -> None:
        loader = getattr(runner, f'{split}_dataloader', None)
        dataset = getattr(loader, 'dataset', None)
        head = getattr(_model(runner), 'head', None)
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        if head is None or classes is None or len(classes) == head.num_classes:
            return
        shown = ', '.join(map(repr, list(classes)[:5])) + (', ...' if len(classes) > 5 else '')
        raise ClassificationDataError(
            f'the {split} data set has {len(classes)} classes ({shown}) but the model predicts '
            f'{head.num_classes} (model.head.num_classes); set model.head.num_classes='
            f'{len(classes)} (e.g. --cfg-options model.head.num_classes={len(classes)}) or '
            f'point the config at the data set the model is for')

    def before_train(self, runner) -> None:
        self._check(runner, 'train')

    def before_val(self, runner) -> None:
        self._check(runner, 'val')

    def before_test(self, runner) -> None:
        self._check(runner, 'test')
