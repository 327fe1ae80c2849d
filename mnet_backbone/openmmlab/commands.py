"""What ``tools/train.py`` and ``tools/test.py`` do, as functions the tests call too.

The command lines are mmdet 3.x's (``--work-dir``, ``--cfg-options``, ``--resume``, ``--amp``,
``--launcher``; test: ``--out``, ``--show-dir``), with these additions for this stack: a missing
data set is reported before any worker starts, a config whose library is not installed (a
classification config without mmpretrain) is one message naming the extra, ``--amp`` works
without a GPU (bfloat16), and distributed runs without a GPU use gloo instead of nccl. They run
detector configs (``default_scope='mmdet'``) and classification configs
(``default_scope='mmpretrain'``) alike.

Reliability (issue 17): the Runner is :class:`~.runner.CheckedRunner` unless the config names
another (checkpoints written whole, ``--resume`` skips an unreadable newest checkpoint, hook and
loop keys checked at start-up); ``--cfg-options`` that set a top-level variable the config
already used (``data_root=DIR``) are an error naming the keys that control it; and the expected
failures (unreadable checkpoints, bad data, a diverging run, config
mistakes) end the command with one ``error:`` message and exit code 2, no traceback.

Bad input (issue 23): the work dir and ``--out``'s folder are checked to be writable before any
work; a checkpoint that does not fit the model (``--cfg-options model.backbone.alpha=0.5``) is an
error (:class:`~.runner.CheckedRunner`); a model setting out of range is the model's own message
(:class:`~mnet_backbone.model.InvalidSettingError`).
"""
import argparse
import importlib
import inspect
import os
import os.path as osp
import sys
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mnet_backbone  # noqa: F401  (registers the model and applies the checkpoint fix)
from ..files import check_writable_folder
from .runner import CheckedRunner


class UsageError(ValueError):
    """A command-line argument that cannot work (the message says how to fix it)."""


class DatasetNotFoundError(UsageError):
    """A config points at data that is not there."""


class ConfigError(UsageError):
    """A config file that cannot be read, or a ``--cfg-options`` override that cannot work."""


def _datasets(loader_cfg):
    dataset = loader_cfg.get('dataset') if loader_cfg else None
    while dataset is not None:
        yield dataset
        # Wrappers (RepeatDataset, ClassBalancedDataset, ...) hold the real one(s) inside.
        inner = dataset.get('dataset') or dataset.get('datasets')
        if isinstance(inner, (list, tuple)):
            for d in inner:
                yield from _datasets(dict(dataset=d))
            return
        dataset = inner


# Expected layout and demo set per data set type, for the message below (default: COCO).
_CLS_HINT = (('class folders: {root}/{{train,val}}/<class>/*.jpg; ImageNet: '
              'train/<wnid>/*.JPEG + val/<wnid>/*.JPEG'), 'python tools/make_shapes_cls_dataset.py')
_LAYOUT_HINTS = {name: _CLS_HINT for name in ('ImageFolderDataset', 'CustomDataset', 'ImageNet')}
_COCO_HINT = ('COCO layout: {root}/annotations/instances_{{train,val}}2017.json + '
              '{{train,val}}2017/ images', 'python tools/make_shapes_dataset.py')


def _image_prefix(dataset) -> Optional[str]:
    """The image folder of a data set config: mmdet's ``data_prefix=dict(img=...)``,
    mmpretrain's ``data_prefix='train'`` / ``dict(img_path=...)`` or ImageNet's ``split``."""
    prefix = dataset.get('data_prefix')
    if isinstance(prefix, dict):
        prefix = prefix.get('img', prefix.get('img_path'))
    if not prefix and dataset.get('split'):
        return dataset['split']
    return prefix


def check_dataset_paths(cfg: Config, splits=('train', 'val', 'test')) -> None:
    """Raise :class:`DatasetNotFoundError` naming the first annotation file or image folder of
    the given splits that does not exist, and how to get data."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        for dataset in _datasets(loader):
            root = dataset.get('data_root') or ''
            paths = []
            if dataset.get('ann_file'):
                paths.append(('annotation file', osp.join(root, dataset['ann_file'])))
            img_dir = _image_prefix(dataset)
            if img_dir is not None:
                paths.append(('image folder', osp.join(root, img_dir)))
            for what, path in paths:
                if '://' not in path and not osp.exists(path):
                    layout, demo = _LAYOUT_HINTS.get(dataset.get('type'), _COCO_HINT)
                    layout = layout.format(root=root.rstrip('/') or '.')
                    raise DatasetNotFoundError(
                        f'{split} data set: {what} {path!r} does not exist.\n'
                        f'  Put the data there ({layout}), point '
                        f'the config at it, e.g. --cfg-options '
                        f'{split}_dataloader.dataset.data_root=/path/to/data/, or generate the '
                        f'demo set: {demo}')


def parse_cfg_options(opts: Sequence[str]) -> dict:
    """``["key=value", ...]`` as ``--cfg-options`` reads them (values parsed the same way)."""
    return {k: DictAction._parse_iterable(v) for k, v in (o.split('=', 1) for o in opts)}


# Top-level keys something reads after the config is parsed: Runner.from_cfg's arguments, the
# cfg.get() calls of mmengine 0.10.7's Runner, mmdet's tools (--tta) and these tools. Any other
# top-level key is a variable of the config file, used while the file ran and never again.
_READ_AFTER_PARSING = (set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}) | {
    'runner_type', 'model_wrapper_cfg', 'sync_bn', 'find_unused_parameters', 'compile',
    'activation_checkpointing', 'efficient_conv_bn_eval', 'strategy', 'gpu_ids',
    'custom_imports', 'tta_model', 'tta_pipeline'}


def _uses(value, node, path: str = '') -> Iterator[Tuple[str, object]]:
    """``(key path, value there)`` below ``node`` where ``value`` was used: an equal value, a
    string starting with ``value`` (``ann_file=data_root + '...'``), a list of numbers holding
    it. True / False / None / 0 / 1 say nothing about where they came from."""
    if isinstance(value, bool) or value is None or (isinstance(value, (int, float))
                                                    and value in (0, 1)):
        return
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, (list, tuple)) and any(isinstance(v, (dict, list, tuple))
                                                 for v in node):
        items = enumerate(node)
    else:
        if node == value and type(node) is type(value):
            yield path, node
        elif isinstance(value, str) and isinstance(node, str) and len(value) > 2 \
                and node.startswith(value):
            yield path, node
        elif isinstance(value, (int, float)) and isinstance(node, (list, tuple)) \
                and value in node:
            yield path, node
        return
    if path and isinstance(value, (dict, list, tuple)) and node == value:
        yield path, node
        return
    for key, child in items:
        yield from _uses(value, child, f'{path}.{key}' if path else str(key))


def check_cfg_options(cfg: Config, options: dict) -> None:
    """Refuse ``--cfg-options`` that set a top-level variable the config already used.

    mmengine merges overrides into the parsed config: ``data_root=DIR`` then sets a variable the
    config file read while it ran (``train_dataloader.dataset.data_root = data_root``) and nothing
    reads afterwards, so the run silently uses the old data. Raises :class:`ConfigError` naming
    the keys that hold the old value, with the overrides to use instead (for strings); warns
    when the old value appears nowhere else."""
    problems = []
    for key, new in options.items():
        name, _, rest = key.partition('.')
        if name in _READ_AFTER_PARSING or name not in cfg:
            continue
        old = cfg[name]
        used = [(path, there) for top in cfg if top in _READ_AFTER_PARSING
                for path, there in _uses(old, cfg[top], top)]
        if not used:
            warnings.warn(f'--cfg-options {key}={new}: {name!r} is a variable of the config file, '
                          f'not a setting anything reads; the override changes nothing',
                          stacklevel=2)
            continue
        where = [f'{path}.{rest}' if rest else path for path, _ in used]
        fix = ''
        if not rest and isinstance(old, str) and isinstance(new, str):
            fix = ('; e.g. --cfg-options ' + ' '.join(
                f'{path}={new}{there[len(old):]}' for path, there in used))
        problems.append(
            f'--cfg-options {key}={new}: {name!r} is a variable the config file already used '
            f'(its value {old!r}) when it was read, so setting it changes nothing; the keys '
            f'that control it: {", ".join(where)}{fix}')
    if problems:
        raise ConfigError('\n'.join(problems))


def dataset_options(data_root: str, classes: Optional[Sequence[str]] = None) -> List[str]:
    """``--cfg-options`` that point a config's train/val/test data and evaluators at a COCO-layout
    folder (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/``)."""
    data_root = data_root.rstrip('/') + '/'
    opts = []
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={data_root}')
        if classes is not None:  # a tuple, as mmdet's configs (its confusion_matrix.py adds one)
            opts.append(f'{split}_dataloader.dataset.metainfo.classes='
                        + '(' + ','.join(f"'{c}'" for c in classes) + ',)')
    ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
    opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    return opts


def _common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value (e.g. '
        'train_dataloader.batch_size=4 model.backbone.alpha=0.5)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def _load_config(args) -> Config:
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = _fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        check_cfg_options(cfg, args.cfg_options)
        try:
            cfg.merge_from_dict(args.cfg_options)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ConfigError(f'--cfg-options: {exc}') from None
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.launcher != 'none' and not torch.cuda.is_available():
        _distribute_on_cpu(cfg)
    return cfg


def _fromfile(path: str) -> Config:
    """``Config.fromfile`` whose failing ``custom_imports`` (the classification face without
    mmpretrain) raise their own message, not mmengine's listing of ``sys.path``, and a config
    file that cannot be read or run is one :class:`ConfigError`."""
    if not osp.isfile(path):
        raise ConfigError(f'config file {path!r} does not exist')
    try:
        cfg = Config.fromfile(path, import_custom_modules=False)
    except Exception as exc:  # noqa: BLE001 (the config file's own code ran: its error)
        raise ConfigError(f'config {path}: {type(exc).__name__}: {exc}') from None
    custom = cfg.get('custom_imports') or {}
    for name in custom.get('imports', []):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            if not custom.get('allow_failed_imports', False):
                raise UsageError(f'{path}: {exc}') from exc
    return cfg


def _distribute_on_cpu(cfg: Config) -> None:
    """mmengine 0.10.7 assumes GPUs for distributed runs (nccl, ``torch.cuda.set_device``, DDP
    with ``device_ids``); without one, use gloo and a CPU DDP wrapper."""
    dist_cfg = cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))


def _build_runner(cfg: Config) -> Runner:
    import torch.distributed as dist
    if cfg.launcher == 'pytorch' and not torch.cuda.is_available() and not dist.is_initialized():
        # mmengine's own init_dist calls torch.cuda.set_device; torchrun set the env variables.
        dist_cfg = dict(cfg.env_cfg.dist_cfg)
        dist.init_process_group(**dist_cfg)
    # The package's Runner unless the config names one (its configs name CheckedRunner).
    return CheckedRunner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description='Train a detector or classifier (mmdet 3.x command line)')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 + loss scaling on GPU, bfloat16 on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate with the total batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the latest checkpoint in '
        'the work dir')
    _common_args(parser)
    return parser


def train_config(argv: Optional[List[str]] = None) -> Config:
    """The config ``tools/train.py`` trains with, after its flags are applied."""
    args = train_parser().parse_args(argv)
    cfg = _load_config(args)
    if args.amp:
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        else:
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise UsageError('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) in '
                             'the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise UsageError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def _check_work_dir(cfg: Config) -> None:
    if '://' not in str(cfg.work_dir):
        check_writable_folder(cfg.work_dir, 'pass another --work-dir')


def train(argv: Optional[List[str]] = None) -> Runner:
    cfg = train_config(argv)
    check_dataset_paths(cfg, ('train', 'val') if cfg.get('val_cfg') else ('train',))
    _check_work_dir(cfg)
    runner = _build_runner(cfg)
    runner.train()
    _close_distributed()
    return runner


def _close_distributed() -> None:
    """Shut the process group down before exit: gloo's threads abort the process
    ("terminate called without an active exception") if the interpreter exits with it open."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector or classifier')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump predictions to this pickle file (.pkl)')
    parser.add_argument('--show-dir', help='draw predictions into this folder (relative to '
                        'the run\'s timestamp folder in the work dir)')
    _common_args(parser)
    return parser


def test_config(argv: Optional[List[str]] = None):
    """The config ``tools/test.py`` runs and its parsed arguments."""
    args = test_parser().parse_args(argv)
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise UsageError(f'checkpoint {args.checkpoint!r} does not exist')
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        raise UsageError(f'--out must name a .pkl file, got {args.out!r}')
    cfg = _load_config(args)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        if 'visualization' not in cfg.default_hooks:
            raise UsageError('--show-dir needs default_hooks.visualization in the config')
        if _is_mmdet(cfg):  # mmdet's hook: a folder in the run's timestamp folder
            cfg.default_hooks.visualization.draw = True
            cfg.default_hooks.visualization.test_out_dir = args.show_dir
        else:  # mmpretrain's VisualizationHook, as its tools/test.py sets it: the folder itself
            cfg.default_hooks.visualization.enable = True
            cfg.default_hooks.visualization.out_dir = args.show_dir
            cfg.default_hooks.visualization.interval = 1
    return cfg, args


def _is_mmdet(cfg: Config) -> bool:
    return cfg.get('default_scope', 'mmdet') == 'mmdet'


def test(argv: Optional[List[str]] = None) -> dict:
    cfg, args = test_config(argv)
    check_dataset_paths(cfg, ('test',))
    _check_work_dir(cfg)
    if args.out is not None:  # written after the whole evaluation: its folder is checked now
        check_writable_folder(osp.dirname(osp.abspath(args.out)), 'pass another --out')
    runner = _build_runner(cfg)
    if args.out is not None:
        if _is_mmdet(cfg):
            from mmdet.evaluation import DumpDetResults as DumpResults
        else:  # what mmpretrain's tools/test.py dumps
            from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=args.out))
    metrics = runner.test()
    _close_distributed()
    return metrics


def _expected_errors() -> tuple:
    """What a command line reports in one message: the user's input is wrong or broken (each
    message names the problem and the fix), not the program."""
    from ..deploy.data import CalibrationError
    from ..files import UnwritableFolderError
    from ..images import UnreadableImageError
    from ..model import InvalidSettingError
    from ..state_dicts import CheckpointMismatchError
    from ..weights.hub import WeightsError
    from . import guards, runner
    errors = [UsageError, runner.ConfigKeyError, WeightsError, CheckpointMismatchError,
              guards.NonFiniteLossError, CalibrationError, UnreadableImageError,
              InvalidSettingError, UnwritableFolderError]
    # Each face's data errors, for the faces that are loaded.
    if 'mnet_backbone.mmdet_plugin' in sys.modules:
        errors.append(sys.modules['mnet_backbone.mmdet_plugin.data_checks'].DataCheckError)
    if 'mnet_backbone.mmpretrain_plugin' in sys.modules:
        errors.append(sys.modules['mnet_backbone.mmpretrain_plugin'].ClassificationDataError)
    return tuple(errors)


def _message(exc: BaseException) -> str:
    """``exc``'s message; for an error raised in a data loader worker, which torch re-raises as
    its type with the worker's whole traceback as the message, the original message only."""
    text = str(exc)
    if 'Original Traceback' in text:
        marker = f'{type(exc).__name__}: '
        if marker in text:
            text = text.rsplit(marker, 1)[1]
    return text.strip()


def run_cli(fn, argv=None) -> int:
    """Run ``fn`` for a command line: expected failures (unreadable checkpoints, bad data, a
    diverging run, config mistakes) print one ``error:`` message and return 2, no traceback."""
    try:
        fn(argv)
    except _expected_errors() as exc:
        print(f'error: {_message(exc)}', file=sys.stderr)
        return 2
    return 0
