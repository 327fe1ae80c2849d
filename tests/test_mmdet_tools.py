"""mmdet's own command-line tools, run unmodified from the installed wheel (``mmdet/.mim/tools``,
what ``mim`` runs) on this package's configs and a tiny generated set."""
import glob
import os
import subprocess
import sys

import pytest

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not has('mmdet'), reason='needs the mmdet extra')

if has('mmdet'):
    import mmdet

    from mmdet_utils import config_path, tiny_options

    TOOLS = os.path.join(os.path.dirname(mmdet.__file__), '.mim', 'tools')

CONFIG = 'ssdlite320_mnet_a050.py'


def run_tool(script, *args, cwd=ROOT, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    proc = subprocess.run([sys.executable, os.path.join(TOOLS, script), *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f'{script} exited {proc.returncode}:\n{proc.stderr[-4000:]}'
    return proc


@pytest.fixture(scope='module')
def trained(shapes_root, tmp_path_factory):
    """mmdet's tools/train.py (1 epoch) and tools/test.py (--out) on the tiny set."""
    work = tmp_path_factory.mktemp('mmdet_tools')
    opts = tiny_options(CONFIG, shapes_root)
    run_tool('train.py', config_path(CONFIG), '--work-dir', work, '--cfg-options', *opts,
             'train_cfg.val_interval=2')  # test.py evaluates
    checkpoint = work / 'epoch_1.pth'
    assert checkpoint.is_file()
    preds = work / 'preds.pkl'
    proc = run_tool('test.py', config_path(CONFIG), checkpoint, '--work-dir', work, '--out',
                    preds, '--cfg-options', *opts)
    assert preds.stat().st_size > 0
    assert 'coco/bbox_mAP' in proc.stdout + proc.stderr
    return dict(work=work, checkpoint=checkpoint, preds=preds, opts=opts)


@pytest.mark.slow
def test_train_and_test(trained):
    logs = glob.glob(str(trained['work'] / '*' / 'vis_data' / 'scalars.json'))
    assert logs, 'train.py wrote no scalars'


# The analysis tools run one after another in one Python process (each as ``__main__`` with its
# own sys.argv, as ``python <tool> ...`` would): one mmdet import instead of one per tool.
DRIVER = r"""
import json, runpy, sys, traceback
codes = {}
for script, argv in json.loads(sys.argv[1]):
    sys.argv = [script] + argv
    try:
        runpy.run_path(script, run_name='__main__')
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    codes[script.split('/tools/', 1)[1]] = code
print('EXIT CODES ' + json.dumps(codes))
"""


def run_tools(*calls, timeout=600):
    import json
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    calls = [[os.path.join(TOOLS, script), [str(a) for a in args]] for script, *args in calls]
    proc = subprocess.run([sys.executable, '-c', DRIVER, json.dumps(calls)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0 and 'EXIT CODES ' in proc.stdout, proc.stderr[-4000:]
    codes = json.loads(proc.stdout.rsplit('EXIT CODES ', 1)[1])
    assert codes == {script: 0 for script, _ in
                     ((c[0].split('/tools/', 1)[1], None) for c in calls)}, \
        f'{codes}\n{proc.stderr[-4000:]}'
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_analysis_tools(trained, shapes_root, tmp_path):
    """get_flops, browse_dataset, benchmark, confusion_matrix, analyze_logs, eval_metric and
    print_config exit 0 on this package's config and the tiny set."""
    opts = trained['opts']
    log = [p for p in sorted(glob.glob(str(trained['work'] / '*' / 'vis_data' / '*.json')))
           if not p.endswith('scalars.json')][0]
    config = config_path(CONFIG)
    out = run_tools(
        ('analysis_tools/get_flops.py', config, '--num-images', '1', '--cfg-options', *opts),
        ('analysis_tools/browse_dataset.py', config, '--not-show', '--output-dir',
         tmp_path / 'browse', '--cfg-options', *opts),
        # 4 val images one by one: the loader must last max_iter batches (else mmdet divides by 0)
        ('analysis_tools/benchmark.py', config, '--task', 'dataloader', '--max-iter', '3',
         '--num-warmup', '1', '--log-interval', '1', '--dataset-type', 'val', '--work-dir',
         tmp_path, '--cfg-options', *opts, 'val_dataloader.batch_size=1'),
        ('analysis_tools/eval_metric.py', config, trained['preds'], '--cfg-options', *opts),
        ('analysis_tools/confusion_matrix.py', config, trained['preds'], tmp_path,
         '--cfg-options', *opts),
        ('analysis_tools/analyze_logs.py', 'plot_curve', log, '--keys', 'loss', '--out',
         tmp_path / 'loss.png'),
        ('misc/print_config.py', config, '--save-path', tmp_path / 'printed.py',
         '--cfg-options', 'model.backbone.alpha=0.75'))
    assert 'Flops:' in out and 'Params:' in out                     # get_flops
    assert len(list((tmp_path / 'browse').glob('*.jpg'))) == 8      # the 8 training images
    assert 'Overall fps' in out                                     # benchmark
    assert 'bbox_mAP' in out                                        # eval_metric
    assert (tmp_path / 'confusion_matrix.png').is_file()
    assert (tmp_path / 'loss.png').is_file()                        # analyze_logs
    assert "type='MobileNetV1'" in out and 'alpha=0.75' in out      # print_config
    assert (tmp_path / 'printed.py').is_file()
