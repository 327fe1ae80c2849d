"""The MMDetection face: registry backbone, shipped configs, tools, resume, DDP, optimizer."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import has

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='mmdet extra not installed '
                                '(bash tools/install.sh installs it)')

if has('mmdet'):
    import mnet_backbone  # noqa: F401
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from torch.nn.modules.batchnorm import _BatchNorm

    from mnet_backbone.openmmlab.commands import (DatasetNotFoundError, check_dataset_paths,
                                                  test as run_test, train as run_train,
                                                  train_config)
    from mnet_backbone.model import scale_channels
    from mmdet_utils import CONFIGS, ROOT, config_path, tiny_options

    register_all_modules()


def build_backbone(**kwargs):
    return MODELS.build(dict(type='MobileNetV1', **kwargs))


@pytest.mark.parametrize('alpha', [0.25, 0.5, 0.75, 1.0])
def test_registry_build_and_output_tuple(alpha):
    model = build_backbone(alpha=alpha, out_indices=(0, 1, 2, 3, 4)).eval()
    assert type(model).__mro__[1].__module__ == 'mnet_backbone.model'  # the one core model
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 96, 128))
    assert isinstance(outs, tuple) and len(outs) == 5
    for out, channels, stride in zip(outs, (64, 128, 256, 512, 1024), (2, 4, 8, 16, 32)):
        assert out.shape == (1, scale_channels(channels, alpha), 96 // stride, 128 // stride)
    ssd = build_backbone(alpha=alpha, out_indices=(3, 4)).eval()
    assert [o.shape[1] for o in ssd(torch.randn(1, 3, 64, 64))] == [
        scale_channels(512, alpha), scale_channels(1024, alpha)]


@pytest.mark.parametrize('kwargs,match', [
    (dict(alpha=0), 'alpha'), (dict(out_indices=(5,)), 'out_indices'),
    (dict(frozen_stages=7), 'frozen_stages'),
    (dict(pretrained='x.pth', init_cfg=dict(type='Pretrained', checkpoint='y')), 'not both'),
])
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_backbone(**kwargs)
    with pytest.raises(TypeError, match='pretrained'):
        build_backbone(pretrained=3)


def test_frozen_stages_as_mmdet_checks_them():
    model = build_backbone(frozen_stages=2)
    model.train()
    for i in range(3):
        for mod in model.stages[i].modules():
            if isinstance(mod, _BatchNorm):
                assert mod.training is False
        for param in model.stages[i].parameters():
            assert param.requires_grad is False
    for param in model.stages[3].parameters():
        assert param.requires_grad


def test_norm_eval_and_norm_cfg():
    model = build_backbone(norm_eval=True, norm_cfg=dict(type='BN', eps=1e-3, momentum=0.03),
                           act_cfg=dict(type='ReLU'))
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    assert isinstance(model.stages[0][0].act, torch.nn.ReLU)
    gn = build_backbone(alpha=0.25, norm_cfg=dict(type='GN', num_groups=8))
    assert isinstance(gn.stages[1][0].dw.bn, torch.nn.GroupNorm)


def test_with_cp_gives_same_outputs_and_grads():
    torch.manual_seed(0)
    plain = build_backbone(alpha=0.25)
    cp = build_backbone(alpha=0.25, with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    outs = [m.train()(x) for m in (plain, cp)]
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b)
    for out in outs:
        sum(o.sum() for o in out).backward()
    for a, b in zip(plain.parameters(), cp.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_pretrained_init_cfg_with_prefix(tmp_path):
    source = build_backbone(alpha=0.25)
    detector_ckpt = {'state_dict': {f'backbone.{k}': v for k, v in source.state_dict().items()}}
    detector_ckpt['state_dict']['neck.some.weight'] = torch.zeros(3)
    path = tmp_path / 'detector.pth'
    torch.save(detector_ckpt, path)
    model = build_backbone(alpha=0.25, init_cfg=dict(type='Pretrained', checkpoint=str(path),
                                                     prefix='backbone.'))
    model.init_weights()
    for k, v in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    with pytest.warns(DeprecationWarning, match='init_cfg'):
        legacy = build_backbone(alpha=0.25, pretrained=str(path))
    assert legacy.init_cfg == dict(type='Pretrained', checkpoint=str(path))


# Every config builds, trains and predicts at alpha 0.25/0.5/0.75/1.0: tests/test_mmdet_widths.py


def test_dwconv_weights_get_no_weight_decay():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(config_path('ssdlite320_mnet.py'))
    model = MODELS.build(cfg.model)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    decay = {id(g['params'][0]): g['weight_decay'] for g in wrapper.optimizer.param_groups}
    dw = model.backbone.stages[2][0].dw.conv.weight
    pw = model.backbone.stages[2][0].pw.conv.weight
    assert dw.shape[1] == 1  # depthwise
    assert decay[id(dw)] == 0.0
    assert decay[id(pw)] == pytest.approx(4e-5)
    base_decay = cfg.optim_wrapper.optimizer.weight_decay
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            is_dw = module.groups == module.in_channels and module.groups > 1
            assert decay[id(module.weight)] == (0.0 if is_dw else pytest.approx(base_decay)), name


@pytest.mark.slow
def test_missing_dataset_error(tmp_path, capsys):
    missing = tmp_path / 'nowhere'
    cfg = Config.fromfile(config_path('ssd_mnet.py'))
    cfg.train_dataloader.dataset.data_root = str(missing)
    with pytest.raises(DatasetNotFoundError, match='nowhere') as err:
        check_dataset_paths(cfg)
    assert 'make_shapes_dataset' in str(err.value) and 'data_root' in str(err.value)
    # The command line prints one line and exits 2, no traceback.
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
                           config_path('ssd_mnet.py'), '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', f'train_dataloader.dataset.data_root={missing}/'],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert 'nowhere' in proc.stderr and 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_train_val_test_through_runner(shapes_root, tmp_path):
    config = config_path('ssdlite320_mnet_a050.py')
    work = tmp_path / 'work'
    runner = run_train([config, '--work-dir', str(work), '--cfg-options',
                        *tiny_options(config, shapes_root, epochs=2)])
    assert runner.iter == 4 and runner.epoch == 2
    assert (work / 'epoch_2.pth').is_file()
    metrics = run_test([config, str(work / 'epoch_2.pth'), '--work-dir', str(work),
                        '--out', str(tmp_path / 'preds.pkl'), '--show-dir', 'vis',
                        '--cfg-options', *tiny_options(config, shapes_root)])
    assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0
    assert (tmp_path / 'preds.pkl').stat().st_size > 0
    drawn = list(work.glob('*/vis/*.jpg'))
    assert len(drawn) == 4


@pytest.mark.slow
@pytest.mark.parametrize('config', [c for c in CONFIGS if c != 'ssdlite320_mnet_a050.py'])
def test_every_config_passes_val_and_test(config, shapes_root, tmp_path):
    from mmengine.runner import Runner
    opts = tiny_options(config, shapes_root)
    if 'rcnn' in config:  # 320 px instead of mmdet's 1333 x 800: the same path, a third the time
        opts += [f'{split}_dataloader.dataset.pipeline.1.scale=(320,320)'
                 for split in ('val', 'test')]
    cfg = train_config([config_path(config), '--work-dir', str(tmp_path), '--cfg-options', *opts])
    assert 'rcnn' not in config or cfg.test_dataloader.dataset.pipeline[1].scale == (320, 320)
    runner = Runner.from_cfg(cfg)
    for metrics in (runner.val(), runner.test()):
        assert 0.0 <= metrics['coco/bbox_mAP'] <= 1.0


@pytest.mark.slow
def test_amp_on_cpu_uses_bfloat16(shapes_root, tmp_path):
    config = config_path('ssdlite320_mnet_a050.py')
    cfg = train_config([config, '--amp', '--work-dir', str(tmp_path), '--cfg-options',
                        *tiny_options(config, shapes_root)])
    if torch.cuda.is_available():
        pytest.skip('checks the CPU path')
    assert cfg.optim_wrapper.type == 'CPUAmpOptimWrapper'
    from mnet_backbone.mmdet_plugin import CPUAmpOptimWrapper
    conv = torch.nn.Conv2d(3, 4, 3)
    wrapper = CPUAmpOptimWrapper(torch.optim.SGD(conv.parameters(), lr=0.1))
    with wrapper.optim_context(conv):
        assert conv(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16
    runner = run_train([config, '--amp', '--work-dir', str(tmp_path), '--cfg-options',
                        *tiny_options(config, shapes_root), 'train_cfg.val_interval=5'])
    assert isinstance(runner.optim_wrapper, CPUAmpOptimWrapper)
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert loss == loss and loss < 1e4  # finite


def _ckpt_iter(path):
    from mnet_backbone.openmmlab.checkpoint import load_runner_checkpoint
    return load_runner_checkpoint(str(path))


@pytest.mark.slow
def test_resume_after_kill(shapes_root, tmp_path):
    """Kill training mid-way (SIGKILL), --resume: it continues from the saved iteration with the
    checkpoint's optimizer and scheduler state, and finishes where an uninterrupted run does."""
    config = config_path('ssdlite320_mnet_a050.py')
    work = tmp_path / 'work'
    opts = tiny_options(config, shapes_root, epochs=4, batch_size=2) + ['train_cfg.val_interval=10']
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'train.py'), config, '--work-dir',
           str(work), '--cfg-options', *opts]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (work / 'epoch_1.pth').exists():
            assert proc.poll() is None, 'training ended before its first checkpoint'
            assert time.time() < deadline
            time.sleep(0.2)
        time.sleep(0.5)  # let the checkpoint file finish, then kill mid-way
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    latest = (work / 'last_checkpoint').read_text().strip()
    saved = _ckpt_iter(latest)
    assert saved['meta']['iter'] in (4, 8, 12) and saved['meta']['epoch'] < 4

    from mmengine.runner import Runner
    cfg = train_config([config, '--resume', '--work-dir', str(work), '--cfg-options', *opts])
    runner = Runner.from_cfg(cfg)
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    runner.load_or_resume()
    assert runner.iter == saved['meta']['iter'] and runner.epoch == saved['meta']['epoch']
    state = runner.optim_wrapper.state_dict()
    for key, value in saved['optimizer']['state'].items():
        torch.testing.assert_close(state['state'][key]['momentum_buffer'], value['momentum_buffer'])
    assert [s.state_dict() for s in runner.param_schedulers] == saved['param_schedulers']

    runner = run_train([config, '--resume', '--work-dir', str(work), '--cfg-options', *opts])
    assert runner.iter == 16 and runner.epoch == 4
    assert _ckpt_iter(work / 'epoch_4.pth')['meta']['iter'] == 16


@pytest.mark.slow
def test_two_process_ddp_on_cpu(shapes_root, tmp_path):
    config = config_path('ssdlite320_mnet_a050.py')
    work = tmp_path / 'ddp'
    env = dict(os.environ, PYTHON=sys.executable, PORT='29517', OMP_NUM_THREADS='1')
    proc = subprocess.run(
        ['bash', os.path.join(ROOT, 'tools', 'dist_train.sh'), config, '2', '--work-dir',
         str(work), '--cfg-options', *tiny_options(config, shapes_root, batch_size=2)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log and 'MMDistributedDataParallel' in log
    # 8 images, 2 processes x batch 2: 2 iterations per epoch (4 with one process).
    ckpt = _ckpt_iter(work / 'epoch_1.pth')
    assert ckpt['meta']['iter'] == 2
