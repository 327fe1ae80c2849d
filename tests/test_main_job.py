"""The main job (docs/main_job.md) in miniature: data, train, evaluate, draw, plot, deploy."""
import json
import os

import pytest

from conftest import ROOT, has, load_tool

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='needs the mmdet extra')


def _main_job():
    return load_tool('main_job')


@pytest.mark.slow
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
    drawn = sorted((work / 'predictions').glob('*.png'))
    assert len(drawn) == 2
    from PIL import Image
    assert Image.open(drawn[0]).width == 2 * 128 + 4  # ground truth | predictions
    out = capsys.readouterr().out
    assert 'AP @[.50:.95]' in out and str(work / 'metrics.json') in out
    # the last step deploys the detector on the fastest backend and scores it next to PyTorch
    deployed = metrics['deployed']
    assert deployed['precision'] == 'fp32' and deployed['backend'] in ('onnxruntime', 'openvino')
    assert os.path.isfile(deployed['file']) and (work / 'deployed' / 'deploy.json').is_file()
    assert abs(deployed['map_deployed'] - deployed['map_pytorch']) <= 0.005
    assert deployed['map_pytorch'] == pytest.approx(metrics['metrics']['coco/bbox_mAP'], abs=0.005)
    assert f"mAP {deployed['map_deployed']:.3f} vs PyTorch" in out


def test_model_options_set_only_alpha_and_say_the_widths():
    main_job = _main_job()
    config = os.path.join(ROOT, 'configs', 'ssdlite320_mnet_shapes.py')
    opts, line = main_job.model_options(config, 0.25)
    assert opts == ['model.backbone.alpha=0.25']  # the neck and head follow the backbone
    assert line == ('MobileNetV1-0.25: backbone maps of 64, 128, 256 channels, extra layers '
                    '256, 256, 128')  # the network of the measured 0.711 run
    opts, line = main_job.model_options(config, 0.5)
    assert line.endswith('128, 256, 512 channels, extra layers 512, 512, 256')
    with pytest.raises(ValueError, match='fewer than 8'):
        main_job.model_options(config, 0.005)


def test_bad_alpha_stops_before_training(tmp_path, capsys):
    code = _main_job().main(['--data', str(tmp_path / 'shapes'), '--work-dir', str(tmp_path / 'w'),
                             '--num-train', '1', '--num-val', '1', '--image-size', '64',
                             '--alpha', '0.005'])
    assert code == 2
    err = capsys.readouterr().err
    assert '--alpha 0.005' in err and 'fewer than 8' in err
    assert not (tmp_path / 'w').exists()


def test_prediction_picture_draws_only_boxes_above_the_threshold():
    import numpy as np
    from PIL import Image
    report = load_tool('main_job_report')
    PRED_COLOUR, TRUTH_COLOUR, compare_panels = (report.PRED_COLOUR, report.TRUTH_COLOUR,
                                                 report.compare_panels)

    img = Image.new('RGB', (200, 160), (128, 128, 128))
    truth = [(20, 20, 80, 80, 'circle')]
    preds = [(22, 22, 78, 79, 'circle', 0.9), (120, 90, 180, 150, 'star', 0.1)]
    out = np.asarray(compare_panels(img, truth, preds, score_thr=0.3))
    bar = out.shape[0] - 160
    assert out.shape[1] == 2 * 200 + 4  # ground truth | predictions
    left, right = out[bar:, :200], out[bar:, 204:]
    is_colour = lambda a, c: (np.abs(a.astype(int) - c).sum(-1) < 60)  # noqa: E731
    assert is_colour(left[20:81, 20:81], TRUTH_COLOUR).any()
    assert not is_colour(left, PRED_COLOUR).any()
    assert is_colour(right[22:80, 22:79], PRED_COLOUR).any()        # score 0.9: drawn
    assert not is_colour(right[85:160, 115:200], PRED_COLOUR).any()  # score 0.1: not drawn
    assert is_colour(out[:bar, 204:], PRED_COLOUR).any()  # the heading states the threshold
