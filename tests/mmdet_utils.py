"""Helpers for the tests that run mmdet configs on the tiny shapes set."""
import os
import uuid

from mnet_backbone.openmmlab.commands import dataset_options
from mnet_backbone.shapes import CLASSES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Detection configs (classification configs are named mnet_cls_*).
CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, 'configs'))
                 if f.endswith('.py') and not f.startswith('mnet_cls'))


def config_path(name: str) -> str:
    return os.path.join(ROOT, 'configs', name)


def tiny_options(config: str, data_root: str, epochs: int = 1, batch_size: int = 4) -> list:
    """--cfg-options that point a shipped config at the tiny shapes set and keep runs short."""
    run = f'test_{uuid.uuid4().hex[:8]}'
    opts = dataset_options(data_root, CLASSES) + [
            f'experiment_name={run}', f'visualizer.name={run}',
            f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1']
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        opts += [f'{loader}.batch_size={batch_size}', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    head = 'model.roi_head.bbox_head' if 'rcnn' in config else 'model.bbox_head'
    return opts + [f'{head}.num_classes={len(CLASSES)}']
