"""The main job: train SSDLite-MobileNetV1 on the generated shapes set, evaluate it, show it.

    python tools/main_job.py                       # data/shapes, work_dirs/main_job
    python tools/main_job.py --alpha 0.75 --epochs 30
    python tools/main_job.py --nproc 2             # 2-process data-parallel (torchrun)

Steps: generate the data set if it is missing, ``tools/train.py`` (or ``tools/dist_train.sh``),
``tools/test.py``-equivalent evaluation with the COCO metric, drawn predictions and curves, then
``tools/deploy.py``: the detector exported end to end on the fastest CPU backend, its mAP and
ms/image next to PyTorch's.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--config', default=osp.join(ROOT, 'configs', 'ssdlite320_mnet_shapes.py'))
    p.add_argument('--data', default='data/shapes', help='shapes data set folder (made if missing)')
    p.add_argument('--work-dir', default='work_dirs/main_job')
    p.add_argument('--epochs', type=int, help='training epochs (default: the config\'s)')
    p.add_argument('--alpha', type=float, help='width multiplier (default: the config\'s)')
    p.add_argument('--batch-size', type=int, help='images per process and step')
    p.add_argument('--nproc', type=int, default=1, help='processes for data-parallel training')
    p.add_argument('--num-train', type=int, default=800, help='images to generate (train)')
    p.add_argument('--num-val', type=int, default=200, help='images to generate (val)')
    p.add_argument('--image-size', type=int, default=320, help='generated image side (px)')
    p.add_argument('--num-drawn', type=int, default=6, help='val images to draw')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help='draw predictions with at least this score (default 0.3)')
    p.add_argument('--deploy-precision', default='fp32', choices=['fp32', 'bf16', 'int8', 'none'],
                   help='deploy the trained detector (tools/deploy.py, fastest backend) at this '
                        'precision and compare its mAP with PyTorch\'s; none: skip')
    p.add_argument('--cfg-options', nargs='+', default=[], help='extra key=value overrides')
    args = p.parse_args(argv)
    if not 0.0 <= args.score_thr <= 1.0:
        p.error(f'--score-thr must be in [0, 1], got {args.score_thr}')
    return args


def model_options(config: str, alpha: float):
    """``--cfg-options`` for width multiplier ``alpha``, and a line saying the widths it gives.

    Only alpha is set: the neck and head widths follow the backbone when the detector is built
    (mnet_backbone.model.detector_widths, the rule every face uses), and the same helper checks
    alpha here, before any training starts.
    """
    from mmengine.config import Config
    from mnet_backbone.model import detector_widths

    cfg = Config.fromfile(config)
    neck = cfg.model.get('neck') or {}
    strides = tuple(neck.get('level_strides') or ())  # SSD: one per extra layer
    extras = tuple(neck['out_channels'])[-len(strides):] if strides else ()
    widths = detector_widths(alpha, cfg.model.backbone.out_indices, extras)
    fmt = lambda xs: ', '.join(map(str, xs)) or 'none'  # noqa: E731
    line = (f'MobileNetV1-{alpha:g}: backbone maps of {fmt(widths.backbone)} channels, extra '
            f'layers {fmt(widths.extras)}')
    return [f'model.backbone.alpha={alpha}'], line


def main(argv=None) -> int:
    args = parse_args(argv)
    import main_job_report as report  # tools/main_job_report.py, beside this script
    from mnet_backbone.openmmlab.commands import dataset_options, parse_cfg_options, run_cli, test
    from mnet_backbone.shapes import ShapesSpec, is_complete, make_shapes_dataset

    alpha_opts = []
    if args.alpha:  # checked before anything is generated or trained
        try:
            alpha_opts, widths = model_options(args.config, args.alpha)
        except ValueError as exc:
            print(f'error: --alpha {args.alpha}: {exc}', file=sys.stderr)
            return 2
        print(f'[main job] {widths}', flush=True)

    start = time.time()
    if not is_complete(args.data):
        print(f'[main job] generating the shapes data set in {args.data}', flush=True)
        make_shapes_dataset(args.data, ShapesSpec(num_train=args.num_train, num_val=args.num_val,
                                                  image_size=(args.image_size,) * 2))
    opts = dataset_options(args.data) + list(args.cfg_options)
    if args.epochs:
        opts += [f'train_cfg.max_epochs={args.epochs}',
                 f'param_scheduler.1.T_max={args.epochs}', f'param_scheduler.1.end={args.epochs}',
                 f'train_cfg.val_interval={max(1, args.epochs // 4)}']
    if args.alpha:
        opts += alpha_opts
    if args.batch_size:
        opts += [f'train_dataloader.batch_size={args.batch_size}']

    if args.nproc > 1:
        train_cmd = ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), args.config, str(args.nproc)]
    else:
        train_cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), args.config]
    train_cmd += ['--work-dir', args.work_dir, '--cfg-options', *opts]
    print(f'[main job] training: {" ".join(train_cmd[:4])} ...', flush=True)
    env = dict(os.environ, PYTHON=sys.executable)
    if subprocess.run(train_cmd, env=env).returncode != 0:
        print('[main job] training failed (see the log above)', file=sys.stderr)
        return 1
    train_time = time.time() - start

    with open(osp.join(args.work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    print(f'[main job] evaluating {checkpoint}', flush=True)
    results = {}
    code = run_cli(lambda a: results.update(test(a)), [
        args.config, checkpoint, '--work-dir', args.work_dir, '--cfg-options', *opts,
        'test_evaluator.classwise=True'])
    if code:
        return code
    classwise = {k[len('coco/'):-len('_precision')]: v for k, v in results.items()
                 if k.endswith('_precision')}
    metrics = {k: v for k, v in results.items() if not k.endswith('_precision')}

    out = {}
    ann = osp.join(args.data, 'annotations', 'instances_val2017.json')
    option_dict = parse_cfg_options(opts)
    drawn = report.draw_predictions(args.config, checkpoint, ann, osp.join(args.data, 'val2017'),
                                    osp.join(args.work_dir, 'predictions'), args.num_drawn,
                                    score_thr=args.score_thr, cfg_options=option_dict)
    legend = (f'left: ground truth (green); right: predictions with score >= '
              f'{args.score_thr:.2f} (red, class and score)')
    out['predictions'] = report.contact_sheet(drawn, osp.join(args.work_dir, 'predictions.png'),
                                              columns=2, legend=legend)
    out['curves'] = report.plot_curves(args.work_dir, osp.join(args.work_dir, 'curves.png'))
    out['metrics'] = osp.join(args.work_dir, 'metrics.json')
    deployed = None
    if args.deploy_precision != 'none':
        deployed = deploy(args, checkpoint, opts)
        if deployed is None:
            return 1
    total = time.time() - start
    with open(out['metrics'], 'w') as f:
        json.dump(dict(metrics=metrics, classwise=classwise, checkpoint=checkpoint,
                       train_seconds=round(train_time, 1), total_seconds=round(total, 1),
                       options=opts, deployed=deployed), f, indent=2)

    print('\n' + report.format_metrics(metrics, classwise))
    print(f'\n[main job] done in {total / 60:.1f} min (training {train_time / 60:.1f} min). '
          f'bbox mAP@[.5:.95] = {metrics.get("coco/bbox_mAP", float("nan")):.3f}')
    print(f'  metrics:     {out["metrics"]}\n  curves:      {out["curves"]}\n'
          f'  predictions: {out["predictions"]} (truth | predictions with score >= '
          f'{args.score_thr:.2f})\n'
          f'  checkpoint:  {checkpoint}\n  logs:        {args.work_dir}/<timestamp>/')
    if deployed:
        print(f'  deployed:    {deployed["file"]} on {deployed["backend"]} '
              f'({deployed["precision"]}): mAP {deployed["map_deployed"]:.3f} vs PyTorch '
              f'{deployed["map_pytorch"]:.3f}; {deployed["ms_per_image_deployed"]:.1f} ms/image '
              f'vs PyTorch {deployed["ms_per_image_pytorch"]:.1f} ms/image (val set, image to '
              f'boxes)')
    return 0


def deploy(args, checkpoint, opts):
    """tools/deploy.py on the trained detector: the fastest backend, mAP next to PyTorch's."""
    out_dir = osp.join(args.work_dir, 'deployed')
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'deploy.py'), args.config, checkpoint,
           '--output', out_dir, '--backend', 'auto', '--precision', args.deploy_precision,
           '--val', '--cfg-options', *opts]
    if args.deploy_precision == 'int8':
        cmd += ['--calib-dir', osp.join(args.data, 'train2017')]
    print(f'[main job] deploying: tools/deploy.py ... --output {out_dir} --backend auto '
          f'--precision {args.deploy_precision} --val', flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        print('[main job] deployment failed (see the log above)', file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == '__main__':
    sys.exit(main())
