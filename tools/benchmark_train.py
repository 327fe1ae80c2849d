"""Training-step throughput and peak memory of SSD detectors, side by side in one run.

    python tools/benchmark_train.py                 # batch 8, 2 threads, 5 timed steps
    python tools/benchmark_train.py --steps 10 --threads 2 --out bench.md

Each model runs in its own fresh process (same threads, same synthetic batch of COCO-sized
targets) so that peak memory is its own: one fwd+bwd+optimizer step per iteration, after warm-up.
Models: SSD300 / SSDLite320 with MobileNetV1 (alpha 1.0, 0.5) from this package, and mmdet's own
``ssd300_coco`` (VGG16) and ``ssdlite_mobilenetv2`` configs. Mult-adds/params are counted with the
paper's rule (conv + linear weights) by hooks on the real models.
"""
import argparse
import json
import os
import os.path as osp
import resource
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = [
    ('SSD300-MobileNetV1-1.0 (ours)', osp.join(ROOT, 'configs', 'ssd_mnet.py'), 300),
    ('SSD300-MobileNetV1-0.5 (ours)', osp.join(ROOT, 'configs', 'ssd_mnet_a050.py'), 300),
    ('SSDLite320-MobileNetV1-1.0 (ours)', osp.join(ROOT, 'configs', 'ssdlite320_mnet.py'), 320),
    ('SSDLite320-MobileNetV1-0.5 (ours)', osp.join(ROOT, 'configs', 'ssdlite320_mnet_a050.py'),
     320),
    ('SSD300-VGG16 (mmdet ssd300_coco)', 'mmdet::ssd/ssd300_coco.py', 300),
    ('SSDLite320-MobileNetV2 (mmdet)',
     'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py', 320),
]


def measure_one(config: str, size: int, batch: int, steps: int, warmup: int, threads: int) -> dict:
    """Run in a fresh process: build, count, time ``steps`` training steps, peak memory."""
    import torch
    torch.set_num_threads(threads)
    import mnet_backbone  # noqa: F401
    from mmdet.registry import MODELS as REGISTRY
    from mmdet.testing import demo_mm_inputs
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from mnet_backbone.cost import measure

    register_all_modules()
    if config.startswith('mmdet::'):
        from mmengine.hub import get_config
        cfg = get_config(config)  # mmdet's own config, shipped inside the mmdet package
    else:
        cfg = Config.fromfile(config)
    # No download: the VGG config names ImageNet weights; random init is enough for timing.
    cfg.model.backbone.pop('init_cfg', None)
    model = REGISTRY.build(cfg.model)
    model.init_weights()
    cost = measure(model, size, forward=lambda m, x: m._forward(x))
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    packed = demo_mm_inputs(batch, [(3, size, size)] * batch, num_items=[4] * batch,
                            num_classes=80)
    model.train()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _i in range(warmup + steps):
        start = time.perf_counter()
        data = model.data_preprocessor(packed, True)
        loss, _ = model.parse_losses(model(**data, mode='loss'))
        optim.update_params(loss)
        times.append(time.perf_counter() - start)
    step = sorted(times[warmup:])[len(times[warmup:]) // 2]
    return dict(mult_adds=cost.mult_adds, params=cost.params, step_s=step,
                img_per_s=batch / step, peak_rss_mb=resource.getrusage(
                    resource.RUSAGE_SELF).ru_maxrss / 1024,
                rss_before_mb=rss_before / 1024)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--only', help='substring: run only matching models')
    p.add_argument('--out', help='also write the markdown table here')
    p.add_argument('--worker', nargs=2, metavar=('CONFIG', 'SIZE'), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(measure_one(args.worker[0], int(args.worker[1]), args.batch, args.steps,
                                     args.warmup, args.threads)))
        return 0

    rows = []
    for name, config, size in MODELS:
        if args.only and args.only not in name:
            continue
        print(f'measuring {name} ...', file=sys.stderr, flush=True)
        proc = subprocess.run(
            [sys.executable, __file__, '--worker', config, str(size), '--batch', str(args.batch),
             '--steps', str(args.steps), '--warmup', str(args.warmup),
             '--threads', str(args.threads)],
            capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
        if proc.returncode != 0:
            print(proc.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append((name, size, json.loads(proc.stdout.strip().splitlines()[-1])))

    vgg = next((r for n, _, r in rows if 'VGG' in n), None)
    lines = [f'Training step (fwd+bwd+SGD step), batch {args.batch}, {args.threads} threads, '
             f'median of {args.steps} steps; peak RSS of each model\'s own process.', '',
             '| model | input | mult-adds | params | img/s | s/step | peak RSS (MB) | '
             'mult-adds vs VGG | speed vs VGG |', '|' + ' --- |' * 9]
    for name, size, r in rows:
        rel = (f'{vgg["mult_adds"] / r["mult_adds"]:.1f}x fewer',
               f'{r["img_per_s"] / vgg["img_per_s"]:.1f}x') if vgg else ('', '')
        lines.append(f'| {name} | {size} | {r["mult_adds"] / 1e9:.2f}B | '
                     f'{r["params"] / 1e6:.2f}M | '
                     f'{r["img_per_s"]:.2f} | {r["step_s"]:.2f} | {r["peak_rss_mb"]:.0f} | '
                     f'{rel[0]} | {rel[1]} |')
    table = '\n'.join(lines)
    print(table)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(table + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
