"""Classification with mmpretrain and this package's face: MobileNetV1 in mmpretrain's registry,
the paper's recipe (RMSprop as TF, no depthwise decay), fine-tuning, resume, the checked folder
data set, mmpretrain's own tools and bad input."""
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not (has('mmpretrain') and has('mmdet')),
                                reason="cls extra not installed (pip install -e '.[cls]' or "
                                "bash tools/install.sh)")

if has('mmpretrain') and has('mmdet'):
    import mmpretrain
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    from mmpretrain.registry import DATASETS, MODELS

    import mnet_backbone  # noqa: F401
    from mnet_backbone import mmpretrain_plugin
    from mnet_backbone.openmmlab.checkpoint import load_runner_checkpoint
    from mnet_backbone.openmmlab.commands import (
        DatasetNotFoundError,
        UsageError,
        check_dataset_paths,
        run_cli,
        train_config,
    )
    from mnet_backbone.openmmlab.commands import test as run_test
    from mnet_backbone.openmmlab.commands import train as run_train
    from mnet_backbone.mmpretrain_plugin import (
        ClassificationDataError,
        RMSpropTF,
        UnreadableImageError,
    )
    from mnet_backbone.model import MobileNetV1
    from mnet_backbone.shapes_cls import CLASSES, ShapesClsSpec, make_shapes_cls_dataset
    from mnet_backbone.weights import IncompatibleWeightsError

    MMPRETRAIN_TOOLS = os.path.join(os.path.dirname(mmpretrain.__file__), '.mim', 'tools')

CLS_CONFIGS = sorted(f for f in os.listdir(os.path.join(ROOT, 'configs'))
                     if f.startswith('mnet_cls') and f.endswith('.py'))
SHAPES = os.path.join(ROOT, 'configs', 'mnet_cls_shapes.py')


def config_path(name):
    return os.path.join(ROOT, 'configs', name)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """These models are tiny: one thread is fastest, and a second one only contends with other
    jobs for the CPU (restored afterwards for the other test files)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope='module')
def folder_root(tmp_path_factory):
    """A tiny generated class-folder set: 5 classes, 4 train + 2 val images each, 64 px."""
    root = tmp_path_factory.mktemp('shapes_cls')
    make_shapes_cls_dataset(str(root), ShapesClsSpec(train_per_class=4, val_per_class=2,
                                                     image_size=64, seed=3))
    return str(root)


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """Registry builds outside a Runner resolve in mmpretrain's scope, as the configs' Runner
    does (restored afterwards: other test files use mmdet's)."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def tiny_options(data_root, epochs=2, batch_size=8, alpha=0.25):
    # visualizer.name: one per Runner (the name is global in a process, see cls_runtime.py)
    run = uuid.uuid4().hex[:8]
    opts = [f'experiment_name=test_{run}', f'visualizer.name=vis_{run}',
            f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
            'default_hooks.logger.interval=1', 'log_processor.window_size=1']
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        opts += [f'{loader}.dataset.data_root={data_root}/', f'{loader}.batch_size={batch_size}',
                 f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return opts + ([f'model.backbone.alpha={alpha}'] if alpha is not None else [])


def build_classifier(num_classes=5, alpha=0.25, **backbone):
    # head.in_channels is left out: it follows the backbone (mmpretrain_plugin.widths)
    return MODELS.build(dict(type='ImageClassifier',
                             backbone=dict(type='MobileNetV1', alpha=alpha, **backbone),
                             neck=dict(type='GlobalAveragePooling'),
                             head=dict(type='LinearClsHead', num_classes=num_classes)))


# --- the Runner, tools/train.py and tools/test.py, mmpretrain's tools ---------------------------

@pytest.fixture(scope='module')
def trained(folder_root, tmp_path_factory):
    """2 epochs of the shapes config with this package's tools/train.py (the library call)."""
    work = tmp_path_factory.mktemp('cls_work')
    opts = tiny_options(folder_root, epochs=2)
    runner = run_train([SHAPES, '--work-dir', str(work), '--cfg-options', *opts])
    return dict(runner=runner, work=work, opts=opts, checkpoint=work / 'epoch_2.pth')


@pytest.mark.slow
def test_train_val_test_resume_through_runner(trained, tmp_path):
    runner, work, opts = trained['runner'], trained['work'], trained['opts']
    # 20 train images, batch 8 (last batch of 4): 3 iterations per epoch
    assert runner.iter == 6 and runner.epoch == 2
    assert isinstance(runner.optim_wrapper.optimizer, RMSpropTF)
    assert type(runner.model).__module__.startswith('mmpretrain.')  # mmpretrain's classifier
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert np.isfinite(loss)
    top1 = runner.message_hub.get_scalar('val/accuracy/top1').current()
    assert 0.0 <= top1 <= 100.0
    saved = load_runner_checkpoint(str(trained['checkpoint']))
    assert saved['meta']['backbone_settings'] == dict(tf_padding=False, bn_eps=1e-3)

    # tools/test.py: metrics, --out (mmengine's DumpResults, as mmpretrain's test.py), --show-dir
    metrics = run_test([SHAPES, str(trained['checkpoint']), '--work-dir', str(work),
                        '--out', str(tmp_path / 'preds.pkl'), '--show-dir', str(tmp_path / 'vis'),
                        '--cfg-options', *opts])
    assert set(metrics) == {'accuracy/top1', 'accuracy/top2'}
    assert 0.0 <= metrics['accuracy/top1'] <= metrics['accuracy/top2'] <= 100.0
    import pickle
    with open(tmp_path / 'preds.pkl', 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 10 and preds[0]['pred_score'].shape == (5,)
    assert len(list((tmp_path / 'vis').glob('*.png'))) == 10  # one per val image

    # --resume from epoch 2 to 3: step, optimizer state and schedule continue
    opts3 = opts + ['train_cfg.max_epochs=3']
    cfg = train_config([SHAPES, '--resume', '--work-dir', str(work), '--cfg-options', *opts3])
    resumed = Runner.from_cfg(cfg)
    resumed._train_loop = resumed.build_train_loop(resumed._train_loop)
    resumed.optim_wrapper = resumed.build_optim_wrapper(resumed.optim_wrapper)
    resumed.param_schedulers = resumed.build_param_scheduler(resumed.param_schedulers)
    resumed.load_or_resume()
    assert resumed.iter == 6 and resumed.epoch == 2
    state = resumed.optim_wrapper.state_dict()['state']
    for key, value in saved['optimizer']['state'].items():
        torch.testing.assert_close(state[key]['square_avg'], value['square_avg'])
        torch.testing.assert_close(state[key]['momentum_buffer'], value['momentum_buffer'])
    assert [s.state_dict() for s in resumed.param_schedulers] == saved['param_schedulers']
    runner = run_train([SHAPES, '--resume', '--work-dir', str(work), '--cfg-options', *opts3])
    assert runner.iter == 9 and runner.epoch == 3
    assert load_runner_checkpoint(str(work / 'epoch_3.pth'))['meta']['iter'] == 9


# mmpretrain's tools/train.py and tools/test.py, unmodified from the wheel (what ``mim`` runs),
# one after the other in one Python process (one mmpretrain import instead of two).
TOOLS_DRIVER = r"""
import json, runpy, sys
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    runpy.run_path(argv[0], run_name='__main__')
"""


@pytest.mark.slow
def test_mmpretrain_tools_train_and_test_the_configs(trained, folder_root, tmp_path):
    import json
    opts = tiny_options(folder_root, epochs=1)
    calls = [[os.path.join(MMPRETRAIN_TOOLS, 'train.py'), SHAPES, '--work-dir',
              str(tmp_path / 'mmp'), '--cfg-options', *opts],
             # its test.py on the checkpoint this package's tools/train.py wrote
             [os.path.join(MMPRETRAIN_TOOLS, 'test.py'), SHAPES, str(trained['checkpoint']),
              '--work-dir', str(tmp_path / 'mmp'), '--out', str(tmp_path / 'mmp.pkl'),
              '--cfg-options', *opts]]
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    proc = subprocess.run([sys.executable, '-c', TOOLS_DRIVER, json.dumps(calls)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (tmp_path / 'mmp' / 'epoch_1.pth').is_file()
    # the same checkpoint and data give the same accuracy as this package's tools/test.py
    ours = run_test([SHAPES, str(trained['checkpoint']), '--work-dir', str(tmp_path),
                     '--cfg-options', *opts])
    import re
    theirs = re.findall(r'Epoch\(test\).*accuracy/top1: ([\d.]+)', proc.stdout + proc.stderr)
    assert theirs and float(theirs[-1]) == pytest.approx(ours['accuracy/top1']), proc.stderr[-3000:]
    assert (tmp_path / 'mmp.pkl').stat().st_size > 0


@pytest.mark.parametrize('config', CLS_CONFIGS)
def test_every_cls_config_builds_and_evaluates(config, folder_root, tmp_path):
    base = Config.fromfile(config_path(config))
    opts = [*tiny_options(folder_root, alpha=None), 'model.head.num_classes=5',
            'val_dataloader.batch_size=10']
    if base.val_dataloader.dataset.type == 'ImageNet':  # its 1000 categories -> the 5 folders
        opts += [f'{split}_dataloader.dataset.metainfo.classes=({",".join(CLASSES)})'
                 for split in ('train', 'val', 'test')]
    cfg = train_config([config_path(config), '--work-dir', str(tmp_path), '--cfg-options', *opts])
    assert cfg.default_scope == 'mmpretrain'
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model.backbone.alpha == base.model.backbone.alpha
    # written at alpha 1 (1024); the head follows the backbone's width
    assert base.model.head.in_channels == 1024
    assert model.head.fc.in_features == int(1024 * base.model.backbone.alpha)
    metrics = runner.val()
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    sizes = {t['type']: t for t in base.val_dataloader.dataset.pipeline}
    crop = sizes['CenterCrop']['crop_size']
    assert runner.val_dataloader.dataset[0]['inputs'].shape == (3, crop, crop)
    if config.startswith('mnet_cls_imagenet'):
        assert sizes['ResizeEdge']['scale'] == round(crop / 0.875)
        train_crop = base.train_dataloader.dataset.pipeline[1]
        assert train_crop['type'] == 'RandomResizedCrop'
        assert train_crop['scale'] == crop and train_crop['crop_ratio_range'] == (0.25, 1.0)


def test_missing_folder_error_names_the_cls_layout(tmp_path):
    cfg = Config.fromfile(config_path('mnet_cls_imagenet.py'))
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(DatasetNotFoundError, match='nowhere') as err:
        check_dataset_paths(cfg)
    assert 'class folders' in str(err.value) and 'make_shapes_cls_dataset' in str(err.value)


# --- the recipe: depthwise decay, RMSprop as TF ----------------------------------------------

@pytest.mark.parametrize('config', ['mnet_cls_imagenet.py', 'mnet_cls_imagenet_sgd.py'])
def test_depthwise_filters_get_no_weight_decay(config):
    cfg = Config.fromfile(config_path(config))
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base = cfg.optim_wrapper.optimizer.weight_decay
    assert base == pytest.approx(4e-5)
    decay = {id(p): g['weight_decay'] for g in wrapper.optimizer.param_groups
             for p in g['params']}
    assert len(decay) == len(list(model.parameters()))
    depthwise = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            is_dw = module.groups == module.in_channels and module.groups > 1
            depthwise += is_dw
            assert decay[id(module.weight)] == (0.0 if is_dw else pytest.approx(base)), name
        elif isinstance(module, torch.nn.Linear):
            assert decay[id(module.weight)] == pytest.approx(base)
            assert decay[id(module.bias)] == 0.0
        elif isinstance(module, torch.nn.BatchNorm2d):  # TF-slim regularizes no BN parameter
            assert decay[id(module.weight)] == decay[id(module.bias)] == 0.0
    assert depthwise == 13
    if config == 'mnet_cls_imagenet.py':
        opt = wrapper.optimizer
        assert isinstance(opt, RMSpropTF)
        assert (opt.defaults['alpha'], opt.defaults['momentum'], opt.defaults['eps']) == (
            0.9, 0.9, 1.0)
    assert cfg.model.head.get('label_smoothing', 0.0) == 0.0


def tf_rmsprop_reference(w, grads, lrs, decay=0.9, momentum=0.9, eps=1.0, wd=0.0):
    """tf.compat.v1.train.RMSPropOptimizer's update written out (ms starts at 1)."""
    w = w.clone().double()
    ms, mom = torch.ones_like(w), torch.zeros_like(w)
    for g, lr in zip(grads, lrs):
        g = g.double() + wd * w
        ms = decay * ms + (1 - decay) * g * g
        mom = momentum * mom + lr * g / torch.sqrt(ms + eps)
        w = w - mom
    return w


@pytest.mark.parametrize('eps,momentum,wd', [(1.0, 0.9, 4e-5), (1e-3, 0.9, 0.0), (1.0, 0.0, 0.0)])
def test_rmsprop_tf_matches_tensorflow_update(eps, momentum, wd):
    torch.manual_seed(0)
    w0 = torch.randn(5, 3, dtype=torch.float64)
    grads = [torch.randn(5, 3, dtype=torch.float64) * s for s in (0.1, 3.0, 0.01, 1.0)]
    lrs = [0.045, 0.045, 0.02, 0.01]  # a learning-rate change mid-way: lr sits in the momentum
    p = torch.nn.Parameter(w0.clone())
    opt = RMSpropTF([p], lr=lrs[0], alpha=0.9, eps=eps, momentum=momentum, weight_decay=wd)
    for g, lr in zip(grads, lrs):
        opt.param_groups[0]['lr'] = lr
        p.grad = g.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), tf_rmsprop_reference(w0, grads, lrs, 0.9, momentum,
                                                                eps, wd))
    # torch's RMSprop (eps outside the root, accumulator from 0, lr outside the momentum) differs
    q = torch.nn.Parameter(w0.clone())
    ref = torch.optim.RMSprop([q], lr=lrs[0], alpha=0.9, eps=eps, momentum=momentum,
                              weight_decay=wd)
    for g, lr in zip(grads, lrs):
        ref.param_groups[0]['lr'] = lr
        q.grad = g.clone()
        ref.step()
    assert not torch.allclose(p, q)
    if has('timm'):  # an independent implementation of the same update
        from timm.optim import RMSpropTF as TimmRMSpropTF
        r = torch.nn.Parameter(w0.clone())
        timm_opt = TimmRMSpropTF([r], lr=lrs[0], alpha=0.9, eps=eps, momentum=momentum,
                                 weight_decay=wd)
        for g, lr in zip(grads, lrs):
            timm_opt.param_groups[0]['lr'] = lr
            r.grad = g.clone()
            timm_opt.step()
        torch.testing.assert_close(p.detach(), r.detach())


# --- fine-tuning from ImageNet-style weights ---------------------------------------------------

def keras_like_file(path, num_classes=10, alpha=0.25):
    """A core model with TF padding / BN eps 1e-3 and random BN statistics, saved as this
    package's converted weights record them (what tools/convert_weights.py writes)."""
    torch.manual_seed(1)
    core = MobileNetV1(num_classes=num_classes, alpha=alpha, tf_padding=True, bn_eps=1e-3)
    for m in core.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save({'state_dict': core.state_dict(),
                'meta': {'format': 'mnet_backbone', 'source': 'keras',
                         'model_kwargs': {'tf_padding': True, 'bn_eps': 1e-3,
                                          'activation': 'relu6'}}}, str(path))
    return core.eval()


def test_finetune_via_backbone_init_cfg(tmp_path):
    core = keras_like_file(tmp_path / 'w.pth')
    model = MODELS.build(dict(
        type='ImageClassifier',
        backbone=dict(type='MobileNetV1', alpha=0.25,
                      init_cfg=dict(type='Pretrained', checkpoint=f'mnet://{tmp_path}/w.pth')),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=3, in_channels=1024)))
    model.init_weights()
    assert model.backbone.tf_padding and model.backbone.stages[0][0].bn.eps == 1e-3
    torch.testing.assert_close(model.backbone.stages[2][1].pw.conv.weight,
                               core.stages[2][1].pw.conv.weight)
    assert model.head.fc.weight.shape == (3, 256)


def runner_for(folder_root, tmp_path, load_from, num_classes):
    cfg = train_config([SHAPES, '--work-dir', str(tmp_path), '--cfg-options',
                        *tiny_options(folder_root), f'model.head.num_classes={num_classes}'])
    cfg.load_from = load_from
    return Runner.from_cfg(cfg)


def test_load_from_core_weights_gives_the_core_models_logits(folder_root, tmp_path):
    core = keras_like_file(tmp_path / 'w.pth', num_classes=10)
    runner = runner_for(folder_root, tmp_path, str(tmp_path / 'w.pth'), 10)
    assert not runner.model.backbone.tf_padding
    runner.load_or_resume()  # renamed stages.* / fc.* and switched to TF padding + eps 1e-3
    model = runner.model.eval()
    assert model.backbone.tf_padding
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), core(x))

    # mnet://<file> carries the backbone only; the hook adds the classifier (10 = 10 classes)
    runner = runner_for(folder_root, tmp_path, f'mnet://{tmp_path}/w.pth', 10)
    runner.load_or_resume()
    with torch.no_grad():
        torch.testing.assert_close(runner.model.eval()(x, mode='tensor'), core(x))


def test_mismatched_num_classes_on_load_is_a_clear_error(folder_root, tmp_path, caplog):
    keras_like_file(tmp_path / 'w.pth', num_classes=10)
    runner = runner_for(folder_root, tmp_path, str(tmp_path / 'w.pth'), 5)
    with pytest.raises(IncompatibleWeightsError, match=r'10 classes.*num_classes=5') as err:
        runner.load_or_resume()
    assert 'init_cfg' in str(err.value)
    # a classifier checkpoint of another width
    model = build_classifier(num_classes=10, alpha=0.5)
    with pytest.raises(IncompatibleWeightsError, match='alpha=0.5'):
        model.load_state_dict(torch.load(str(tmp_path / 'w.pth'))['state_dict'])
    # mnet://: the backbone loads, the 10-class head is left out with a logged reason
    runner = runner_for(folder_root, tmp_path, f'mnet://{tmp_path}/w.pth', 5)
    head_before = runner.model.head.fc.weight.clone()
    log_text(caplog, runner.load_or_resume)
    assert 'does not fit model.head.num_classes=5' in caplog.text
    torch.testing.assert_close(runner.model.head.fc.weight, head_before)


def test_data_set_with_another_class_count_is_an_error(folder_root, tmp_path):
    with pytest.raises(ClassificationDataError, match=r'5 classes.*predicts 7'):
        run_train([SHAPES, '--work-dir', str(tmp_path), '--cfg-options',
                   *tiny_options(folder_root), 'model.head.num_classes=7'])


# --- the folder data set and its bad input -----------------------------------------------------

def make_folder(root, counts, size=40):
    rng = np.random.default_rng(0)
    from PIL import Image
    for name, n in counts.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)).save(
                root / name / f'{i}.jpg')
    return root


PIPELINE = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=36),
            dict(type='CenterCrop', crop_size=32), dict(type='PackInputs')]


def folder_dataset(root, **kwargs):
    return DATASETS.build(dict(type='ImageFolderDataset', data_root=str(root), data_prefix='',
                               pipeline=PIPELINE, **kwargs))


def log_text(caplog, fn):
    """Run ``fn`` with the current mmengine logger's records going to ``caplog`` as well
    (MMLogger instances have no parent, so nothing propagates to pytest's root handler)."""
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    try:
        return fn()
    finally:
        logger.removeHandler(caplog.handler)


def test_folder_layouts_and_logged_skips(tmp_path, caplog):
    root = make_folder(tmp_path / 'set', {'b_dog': 2, 'a_cat': 3})
    (root / 'a_cat' / 'notes.txt').write_text('x')
    (root / 'a_cat' / 'Thumbs.db').write_text('x')
    os.makedirs(root / 'a_cat' / 'more')
    make_folder(root / 'a_cat' / 'more', {'': 1})  # nested images belong to the class too
    make_folder(root / 'a_cat' / '.ipynb_checkpoints', {'': 1})  # hidden: skipped, counted
    ds = log_text(caplog, lambda: folder_dataset(root))
    assert isinstance(ds, DATASETS.get('CustomDataset'))  # mmpretrain's, with the checks added
    assert ds.metainfo['classes'] == ('a_cat', 'b_dog')  # sorted folder names
    assert len(ds) == 6 and [ds.get_data_info(i)['gt_label'] for i in range(6)] == [0] * 4 + [1] * 2
    assert 'skipped 3 files that are not images or hidden folders' in caplog.text
    assert '1 x (hidden folder)' in caplog.text
    item = ds[5]
    assert item['inputs'].shape == (3, 32, 32) and int(item['data_samples'].gt_label) == 1
    # metainfo classes choose and order the classes; unlisted folders are logged
    caplog.clear()
    ds = log_text(caplog, lambda: folder_dataset(root, metainfo=dict(classes=['b_dog'])))
    assert len(ds) == 2 and 'skipped 1 folders' in caplog.text
    with pytest.raises(ClassificationDataError, match="no folder.*'c_cow'"):
        folder_dataset(root, metainfo=dict(classes=['a_cat', 'c_cow']))
    # a list file with labels (ImageNet's flat val/ + meta/val.txt)
    (root / 'val.txt').write_text('a_cat/0.jpg 1\nb_dog/1.jpg 0\n')
    ds = folder_dataset(root, ann_file='val.txt', metainfo=dict(classes=['x', 'y']))
    assert [ds.get_data_info(i)['gt_label'] for i in range(2)] == [1, 0]
    with pytest.raises(ClassificationDataError, match='metainfo'):
        folder_dataset(root, ann_file='val.txt')
    (root / 'bad.txt').write_text('a_cat/0.jpg 7\n')
    with pytest.raises(ClassificationDataError, match='line 1.*outside 0..1'):
        folder_dataset(root, ann_file='bad.txt', metainfo=dict(classes=['x', 'y']))


def test_empty_class_folders_and_flat_folders_are_errors(tmp_path, caplog):
    root = make_folder(tmp_path / 'set', {'cat': 2, 'dog': 0, 'emu': 0})
    (root / 'dog' / 'readme.md').write_text('x')
    with pytest.raises(ClassificationDataError, match=r"2 of the 3 class folders.*'dog', 'emu'"):
        folder_dataset(root)
    ds = log_text(caplog, lambda: folder_dataset(root, allow_empty_classes=True))
    assert len(ds) == 2 and len(ds.metainfo['classes']) == 3 and 'hold no images' in caplog.text
    flat = make_folder(tmp_path / 'flat', {'': 3})
    with pytest.raises(ClassificationDataError, match='3 images but no class folders.*ann_file'):
        folder_dataset(flat)


def test_unreadable_images_raise_or_are_skipped_with_a_count(tmp_path, caplog):
    root = make_folder(tmp_path / 'set', {'cat': 2, 'dog': 2})
    (root / 'dog' / '9_broken.jpg').write_bytes(b'not a jpeg at all')
    ds = folder_dataset(root)
    broken = next(i for i in range(len(ds)) if 'broken' in ds.get_data_info(i)['img_path'])
    with pytest.raises(UnreadableImageError, match=r"9_broken\.jpg.*bad_images='skip'"):
        ds[broken]
    ds = folder_dataset(root, bad_images='skip')
    item = log_text(caplog, lambda: ds[broken])  # another image instead, logged with a count
    assert item['inputs'].shape == (3, 32, 32)
    n = ds.num_skipped_images  # 1, or more when the random replacement is the broken file again
    assert n >= 1 and caplog.text.count('skipped unreadable image') == n
    assert f'{n} skipped so far in this process' in caplog.text
    ds = folder_dataset(root, bad_images='skip', test_mode=True)  # evaluation never skips
    with pytest.raises(UnreadableImageError, match='delete or replace it'):
        ds[broken]


def test_generated_set_is_deterministic(tmp_path):
    spec = ShapesClsSpec(train_per_class=1, val_per_class=1, image_size=48, seed=5)
    make_shapes_cls_dataset(str(tmp_path / 'a'), spec)
    make_shapes_cls_dataset(str(tmp_path / 'b'), spec)
    for cls in CLASSES:
        for split in ('train', 'val'):
            name = f'{cls}_000000.jpg'  # unique across classes, as ImageNet's file names
            a = (tmp_path / 'a' / split / cls / name).read_bytes()
            assert a == (tmp_path / 'b' / split / cls / name).read_bytes()


# --- the face: backbone conventions, head width, registration, mmpretrain missing --------------

def test_backbone_takes_mmpretrains_conventions():
    backbone = MODELS.build(dict(type='MobileNetV1', alpha=0.25))
    assert isinstance(backbone, MobileNetV1) and backbone.out_indices == [4]  # the last stage
    assert MODELS.build(dict(type='MobileNetV1', out_indices=(-2, -1))).out_indices == [3, 4]
    assert MODELS.build(dict(type='MobileNetV1', out_indices=-3)).out_indices == [2]
    with pytest.raises(ValueError, match=r'0\.\.4 \(or -5\.\.-1'):
        MODELS.build(dict(type='MobileNetV1', out_indices=(5,)))
    frozen = MODELS.build(dict(type='MobileNetV1', alpha=0.25, frozen_stages=1,
                               norm_eval=True)).train()
    assert not any(p.requires_grad for p in frozen.stages[:2].parameters())
    assert all(p.requires_grad for p in frozen.stages[2:].parameters())
    assert not any(m.training for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    feats = frozen(torch.randn(1, 3, 64, 64))
    assert isinstance(feats, tuple) and feats[0].shape == (1, 256, 2, 2)


def test_head_width_follows_the_backbone_and_the_patch_undoes(caplog):
    from mnet_backbone.mmpretrain_plugin import widths
    model = log_text(caplog, lambda: build_classifier(alpha=0.5))
    assert model.head.fc.in_features == 512
    assert 'model.head.in_channels None -> 512' in caplog.text
    cfg = dict(type='ImageClassifier', backbone=dict(type='MobileNetV1', alpha=0.5),
               neck=dict(type='GlobalAveragePooling'),
               head=dict(type='LinearClsHead', num_classes=5, in_channels=300))
    caplog.clear()
    assert log_text(caplog, lambda: MODELS.build(cfg)).head.fc.in_features == 512
    assert '300 is no MobileNetV1 width' in caplog.text
    assert cfg['head']['in_channels'] == 300  # the config itself stays as written
    # other backbones pass through
    other = MODELS.build(dict(type='ImageClassifier', backbone=dict(type='MobileNetV2'),
                              neck=dict(type='GlobalAveragePooling'),
                              head=dict(type='LinearClsHead', num_classes=5, in_channels=300)))
    assert other.head.fc.in_features == 300
    widths.unpatch_classifiers()
    try:
        assert MODELS.build(cfg).head.fc.in_features == 300
        with pytest.MonkeyPatch.context() as mp:  # another mmpretrain version: not patched
            mp.setattr(mmpretrain, '__version__', '1.3.0')
            with pytest.warns(UserWarning, match='write model.head.in_channels'):
                assert widths.patch_classifiers() is False
        assert MODELS.build(cfg).head.fc.in_features == 300
    finally:
        assert widths.patch_classifiers() is True
    assert MODELS.build(cfg).head.fc.in_features == 512


def test_a_taken_registry_name_registers_nothing():
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import Registry
    models = Registry('model', parent=ROOT_MODELS, scope='mnet_conflict_test')
    hooks = Registry('hook', scope='mnet_conflict_test')

    @models.register_module(name='MobileNetV1')
    class SomeoneElses(torch.nn.Module):
        pass

    entries = ((hooks, mmpretrain_plugin.BackboneSettingsHook),
               (models, mmpretrain_plugin.MobileNetV1))
    with pytest.raises(mmpretrain_plugin.RegistryConflictError,
                       match=r"model registry: 'MobileNetV1' is .*SomeoneElses.*Nothing was"):
        mmpretrain_plugin.register(entries)
    assert 'BackboneSettingsHook' not in hooks.module_dict  # not half-registered
    assert models.get('MobileNetV1') is SomeoneElses
    mmpretrain_plugin.register(((hooks, mmpretrain_plugin.BackboneSettingsHook),))
    mmpretrain_plugin.register(((hooks, mmpretrain_plugin.BackboneSettingsHook),))  # idempotent
    assert hooks.get('BackboneSettingsHook') is mmpretrain_plugin.BackboneSettingsHook


def test_classification_config_without_mmpretrain_is_one_message(monkeypatch, capsys):
    import importlib.util
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec',
                        lambda name, *a: None if name == 'mmpretrain' else find_spec(name, *a))
    monkeypatch.delitem(sys.modules, 'mnet_backbone.mmpretrain_plugin')  # restored afterwards
    with pytest.raises(UsageError, match=r"needs mmpretrain, which is not installed: "
                                         r"pip install -e '\.\[cls\]'"):
        train_config([SHAPES])
    assert run_cli(train_config, [SHAPES]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: ') and len(err.splitlines()) == 1 and 'install.sh' in err

