"""Issue 17 through the command lines (``tools/train.py`` / ``tools/test.py``): checkpoints that
survive a kill, a resume that skips a broken newest checkpoint, one ``error:`` line (exit 2) per
expected failure, data checks in the configs, a diverging run stopped, config mistakes reported
before any work. Tiny runs: the shapes set of 8 train / 4 val 128 px images, one step per epoch.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='needs the mmdet extra')

if has('mmdet'):
    from mmdet_utils import config_path, tiny_options
    from mnet_backbone.openmmlab.guards import non_finite_tensors
    from mnet_backbone.openmmlab.commands import run_cli, test as run_test, train as run_train
    from mnet_backbone.weights.hub import load_checkpoint

CONFIG = 'ssdlite320_mnet_a050.py'
MISSING = 2  # the train image whose file the fixture deletes (index into 'images')


def _opts(data_root, epochs=2, *extra):
    # batch 8 = the whole train set: one step per epoch; no validation unless asked
    return tiny_options(CONFIG, str(data_root), epochs=epochs, batch_size=8) + [
        'train_cfg.val_interval=100', *extra]


def _train_argv(work, data_root, *extra, epochs=2, resume=None):
    argv = [config_path(CONFIG), '--work-dir', str(work)]
    if resume is not None:
        argv += ['--resume'] + ([resume] if resume else [])
    return argv + ['--cfg-options', *_opts(data_root, epochs, *extra)]


def _log(work) -> str:
    """The newest run's log in ``work``."""
    logs = sorted((p for p in work.glob('*/*.log')), key=os.path.getmtime)
    return logs[-1].read_text()


def _last(work) -> str:
    return (work / 'last_checkpoint').read_text().strip()


def _copy_run(src, dst):
    """A copy of a work dir whose last_checkpoint names the copy's file."""
    shutil.copytree(src, dst)
    (dst / 'last_checkpoint').write_text(str(dst / os.path.basename(_last(src))))
    return dst


def _shapes_copy(shapes_root, dst, edit=None):
    shutil.copytree(shapes_root, dst)
    if edit:
        for split, change in edit.items():
            path = dst / 'annotations' / f'instances_{split}2017.json'
            path.write_text(json.dumps(change(json.loads(path.read_text()))))
    return dst


@pytest.fixture(scope='module')
def trained(shapes_root, tmp_path_factory):
    """2 epochs through tools/train.py on a copy of the tiny set whose train image MISSING is
    listed but its file deleted."""
    base = tmp_path_factory.mktemp('reliability_tools')
    data = _shapes_copy(shapes_root, base / 'data')
    images = json.loads((data / 'annotations' / 'instances_train2017.json').read_text())['images']
    missing = data / 'train2017' / images[MISSING]['file_name']
    missing.unlink()
    work = base / 'work'
    runner = run_train(_train_argv(work, data))
    assert runner.epoch == 2 and runner.iter == 2
    return dict(work=work, data=data, missing=missing, log=_log(work))


# --- data ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_listed_but_missing_image_is_skipped_with_a_warning_count(trained):
    warned = [line for line in trained['log'].splitlines() if 'skipped image' in line]
    assert len(warned) == 1, warned  # once per file, though both epochs met it
    assert (f"skipped image {trained['missing']} (image id" in warned[0]
            and 'the file does not exist; 1 of ' in warned[0] and 'images skipped so far'
            in warned[0])
    assert (trained['work'] / 'epoch_2.pth').is_file()


@pytest.mark.slow
def test_empty_annotations_are_one_error_at_start_for_train_and_test(trained, shapes_root,
                                                                      tmp_path, capsys):
    data = _shapes_copy(shapes_root, tmp_path / 'empty', edit={
        'train': lambda d: dict(d, annotations=[]), 'val': lambda d: dict(d, annotations=[])})
    assert run_cli(run_train, _train_argv(tmp_path / 'w', data)) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'instances_train2017.json' in err
    assert 'no annotations' in err and 'Traceback' not in err
    assert not list((tmp_path / 'w').glob('*.pth'))
    # test: the data set refuses it before inference (mmdet's CocoMetric reports mAP -1)
    checkpoint = str(trained['work'] / 'epoch_2.pth')
    assert run_cli(run_test, [config_path(CONFIG), checkpoint, '--work-dir', str(tmp_path / 't'),
                              '--cfg-options', *_opts(data)]) == 2
    err = capsys.readouterr().err
    assert 'instances_val2017.json' in err and 'no annotations' in err


def test_the_metric_scores_against_the_boxes_the_data_set_served(shapes_root, tmp_path):
    from mmdet.registry import DATASETS, METRICS
    from mnet_backbone.mmdet_plugin.data_checks import CheckedLoadImageFromFile, DataCheckError

    def bad_box(d):
        a = dict(d['annotations'][0], id=999, bbox=[5, 5, -3, 10])
        return dict(d, annotations=d['annotations'] + [a])

    data = _shapes_copy(shapes_root, tmp_path / 'data', edit={'val': bad_box})
    ann = str(data / 'annotations' / 'instances_val2017.json')
    good = len(json.loads(open(ann).read())['annotations']) - 1
    from mmengine.config import Config
    cfg = Config.fromfile(config_path(CONFIG))
    val = cfg.val_dataloader.dataset
    val.update(data_root=str(data) + '/', metainfo=dict(classes=(
        'circle', 'square', 'triangle', 'star', 'cross')))
    dataset = DATASETS.build(val)
    loader = dataset.pipeline.transforms[0]
    assert type(loader) is CheckedLoadImageFromFile and loader.on_error == 'error'
    assert sum(len(dataset.get_data_info(i)['instances']) for i in range(len(dataset))) == good
    metric = METRICS.build(dict(type='CheckedCocoMetric', ann_file=ann))
    assert len(metric._coco_api.anns) == good + 1  # the file as it is, until it knows the set
    metric.dataset_meta = dataset.metainfo
    assert len(metric._coco_api.anns) == good and 999 not in metric._coco_api.anns
    train = DATASETS.build(dict(cfg.train_dataloader.dataset, data_root=str(data) + '/',
                                metainfo=val.metainfo))
    assert train.pipeline.transforms[0].on_error == 'skip'
    empty = tmp_path / 'empty.json'
    empty.write_text(json.dumps(dict(json.loads(open(ann).read()), annotations=[])))
    with pytest.raises(DataCheckError, match='no annotations to score against'):
        METRICS.build(dict(type='CheckedCocoMetric', ann_file=str(empty)))


# --- checkpoints and resume ---------------------------------------------------------------------

@pytest.mark.slow
def test_resume_skips_a_cut_newest_checkpoint_with_one_warning(trained, tmp_path):
    work = _copy_run(trained['work'], tmp_path / 'work')
    newest = work / 'epoch_2.pth'
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # cut mid-file
    runner = run_train(_train_argv(work, trained['data'], resume=''))
    assert runner.iter == 2 and runner.epoch == 2  # resumed at 1, trained epoch 2 again
    log = _log(work)
    skipped = [line for line in log.splitlines() if 'resume: skipped' in line]
    assert len(skipped) == 1 and str(newest) in skipped[0] and 'truncated zip' in skipped[0]
    assert f'Auto resumed from the newest readable checkpoint {work / "epoch_1.pth"}' in log
    assert load_checkpoint(str(newest))['meta']['iter'] == 2  # written again, whole
    assert _last(work) == str(newest)


@pytest.mark.slow
def test_explicit_unreadable_resume_is_one_error_line(trained, tmp_path):
    cut = tmp_path / 'cut.pth'
    cut.write_bytes((trained['work'] / 'epoch_1.pth').read_bytes()[:1000])
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
         *_train_argv(tmp_path / 'w', trained['data'], resume=str(cut))],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr
    assert f'cannot resume: {cut} is not a readable checkpoint' in errors[0]
    assert 'weights_only' not in proc.stderr + proc.stdout


KILL_DURING_SAVE = r"""
import os, signal, sys
from mmengine.fileio.backends import LocalBackend
from mnet_backbone.openmmlab.commands import run_cli, train

put = LocalBackend.put
def half_then_kill(self, obj, filepath):
    if os.path.basename(str(filepath)).startswith('epoch_2.pth'):
        with open(filepath, 'wb') as f:
            f.write(obj[: len(obj) // 2])
            f.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return put(self, obj, filepath)
LocalBackend.put = half_then_kill
sys.exit(run_cli(train, sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_during_save_leaves_the_last_good_checkpoint_and_resume_cleans_up(trained,
                                                                             tmp_path):
    work = _copy_run(trained['work'], tmp_path / 'work')
    (work / 'epoch_2.pth').unlink()
    (work / 'last_checkpoint').write_text(str(work / 'epoch_1.pth'))
    # max_keep_ckpts=1: mmengine's CheckpointHook deletes epoch_1.pth before it writes epoch 2
    keep_one = 'default_hooks.checkpoint.max_keep_ckpts=1'
    proc = subprocess.run(
        [sys.executable, '-c', KILL_DURING_SAVE,
         *_train_argv(work, trained['data'], keep_one, resume='')],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    partial = list(work.glob('epoch_2.pth.*.partial'))
    assert len(partial) == 1  # the half-written file never had the final name
    assert not (work / 'epoch_2.pth').exists()
    assert _last(work) == str(work / 'epoch_1.pth')
    assert load_checkpoint(str(work / 'epoch_1.pth'))['meta']['iter'] == 1  # kept, whole

    runner = run_train(_train_argv(work, trained['data'], keep_one, resume=''))
    assert runner.iter == 2
    assert not partial[0].exists() and 'removed 1 partial file(s)' in _log(work)
    assert load_checkpoint(str(work / 'epoch_2.pth'))['meta']['iter'] == 2
    assert not (work / 'epoch_1.pth').exists()  # deleted once epoch_2.pth was in place
    assert sorted(p.name for p in work.iterdir() if p.is_file()) == [
        'epoch_2.pth', 'last_checkpoint', CONFIG]


# --- a diverging run ----------------------------------------------------------------------------

@pytest.mark.slow
def test_lr_1e30_stops_with_the_message_and_no_non_finite_checkpoint(trained, tmp_path, capsys):
    work = tmp_path / 'w'
    code = run_cli(run_train, _train_argv(work, trained['data'],
                                          'optim_wrapper.optimizer.lr=1e30', epochs=4))
    assert code == 2
    err = capsys.readouterr().err.strip()
    # the loss of step N (NonFiniteLossError) or the weights after the epoch's last step
    # (NonFiniteCheckpointError), whichever is first non-finite
    assert len(err.splitlines()) == 1 and err.startswith('error: ')
    assert ('training diverged at iteration' in err
            or 'not saving a checkpoint after epoch' in err), err
    assert 'diverged' in err and 'learning rate' in err
    saved = sorted(work.glob('epoch_*.pth'))
    for path in saved:
        assert non_finite_tensors(load_checkpoint(str(path))['state_dict'])[0] == []
    if saved:  # the message names the resume point
        assert f'the last good checkpoint is {_last(work)}' in err
    else:
        assert 'no checkpoint was written before it' in err


# --- config mistakes, before any work -----------------------------------------------------------

def test_overriding_an_expanded_top_level_variable_names_the_real_keys(tmp_path, capsys):
    argv = [config_path(CONFIG), '--work-dir', str(tmp_path), '--cfg-options',
            'data_root=/elsewhere/']
    assert run_cli(run_train, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --cfg-options data_root=/elsewhere/: 'data_root' is a "
                          "variable the config file already used (its value 'data/coco/')")
    for key in ('train_dataloader.dataset.data_root', 'val_dataloader.dataset.data_root',
                'test_dataloader.dataset.data_root', 'val_evaluator.ann_file'):
        assert key in err
    assert ('test_evaluator.ann_file=/elsewhere/annotations/instances_val2017.json' in err)
    assert not list(tmp_path.iterdir())  # nothing started


@pytest.mark.slow
def test_unknown_hook_and_loop_keys_are_reported_at_start_up(trained, tmp_path, capsys):
    work = tmp_path / 'w'
    code = run_cli(run_train, _train_argv(work, trained['data'],
                                          'default_hooks.checkpoint.intervl=1',
                                          'train_cfg.max_epoch=3'))
    assert code == 2
    err = capsys.readouterr().err
    assert ("default_hooks.checkpoint: CheckpointHook has no setting 'intervl' (did you mean "
            "'interval'?)" in err)
    assert "train_cfg: EpochBasedTrainLoop has no setting 'max_epoch' (did you mean " \
           "'max_epochs'?)" in err
    assert not work.exists() or not list(work.glob('*.pth'))


def test_the_configs_run_the_checked_runner_with_the_guard():
    from mmengine.config import Config
    for name in (CONFIG, 'ssdlite320_mnet_shapes.py', 'faster-rcnn_mnet_fpn.py',
                 'mnet_cls_shapes.py'):
        cfg = Config.fromfile(config_path(name))
        assert cfg.runner_type == 'CheckedRunner', name
        assert 'NonFiniteGuardHook' in [h['type'] for h in cfg.custom_hooks], name
        if not name.startswith('mnet_cls'):
            assert cfg.train_dataloader.dataset.type == 'CheckedCocoDataset', name
            assert cfg.test_dataloader.dataset.type == 'CheckedCocoDataset', name
            assert cfg.test_evaluator.type == 'CheckedCocoMetric', name
            # mmdet's inferencers find the test loader by this name
            assert cfg.test_dataloader.dataset.pipeline[0].type == 'LoadImageFromFile', name
