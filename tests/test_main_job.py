"""The README's main job, in miniature: data generation, train, evaluate, draw, plot."""
import importlib.util
import json
import os

import pytest

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='needs the mmdet extra')


def _main_job():
    spec = importlib.util.spec_from_file_location('main_job', os.path.join(ROOT, 'tools', 'main_job.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_main_job_end_to_end(tmp_path, capsys):
    data, work = tmp_path / 'shapes', tmp_path / 'work'
    code = _main_job().main([
        '--data', str(data), '--work-dir', str(work), '--num-train', '8', '--num-val', '4',
        '--image-size', '128', '--epochs', '1', '--batch-size', '4', '--alpha', '0.25',
        '--num-drawn', '2', '--cfg-options', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False', 'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False'])
    assert code == 0
    assert (data / 'annotations' / 'instances_train2017.json').is_file()  # generated
    metrics = json.loads((work / 'metrics.json').read_text())
    assert 0.0 <= metrics['metrics']['coco/bbox_mAP'] <= 1.0
    assert set(metrics['classwise']) == {'circle', 'square', 'triangle', 'star', 'cross'}
    for name in ('curves.png', 'predictions.png'):
        assert (work / name).read_bytes()[:4] == b'\x89PNG'
    assert len(list((work / 'predictions').glob('*.png'))) == 2
    out = capsys.readouterr().out
    assert 'AP @[.50:.95]' in out and str(work / 'metrics.json') in out


def test_model_options_follow_alpha():
    opts = _main_job().model_options(os.path.join(ROOT, 'configs', 'ssdlite320_mnet_shapes.py'), 0.25)
    assert 'model.neck.in_channels=(64,128,256)' in opts
    assert 'model.bbox_head.in_channels=(64,128,256,256,256,128)' in opts
