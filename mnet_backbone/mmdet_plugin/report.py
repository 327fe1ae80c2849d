"""What a finished detection run shows a person: curves, drawn predictions, a metrics table."""
import glob
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

COCO_KEYS = [('bbox_mAP', 'AP @[.50:.95]'), ('bbox_mAP_50', 'AP @.50'),
             ('bbox_mAP_75', 'AP @.75'), ('bbox_mAP_s', 'AP small'),
             ('bbox_mAP_m', 'AP medium'), ('bbox_mAP_l', 'AP large')]


def read_scalars(work_dir: str) -> Dict[str, List[dict]]:
    """Training and validation records of every run (a resumed run adds a folder) in
    ``work_dir``; later runs replace earlier records of the same step."""
    train, val = {}, {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if 'loss' in record:
                    train[record['step']] = record
                elif any(k.endswith('bbox_mAP') for k in record):
                    val[record['step']] = record
    return dict(train=[train[k] for k in sorted(train)], val=[val[k] for k in sorted(val)])


def plot_curves(work_dir: str, out_png: str) -> str:
    """PNG with the training loss per iteration and the val bbox mAP per epoch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    scalars = read_scalars(work_dir)
    if not scalars['train']:
        raise FileNotFoundError(f'no training scalars (*/vis_data/scalars.json) in {work_dir}')
    fig, (ax_loss, ax_map) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r['step'] for r in scalars['train']]
    for key in ('loss', 'loss_cls', 'loss_bbox'):
        if key in scalars['train'][0]:
            ax_loss.plot(steps, [r[key] for r in scalars['train']], label=key)
    ax_loss.set_xlabel('iteration')
    ax_loss.set_ylabel('loss')
    ax_loss.set_yscale('log')
    ax_loss.legend()
    ax_loss.grid(alpha=0.3)
    if scalars['val']:
        epochs = [r['step'] for r in scalars['val']]
        for key, label in COCO_KEYS[:3]:
            ax_map.plot(epochs, [r.get(f'coco/{key}', np.nan) for r in scalars['val']], 'o-',
                        label=label)
        ax_map.legend()
    ax_map.set_xlabel('epoch')
    ax_map.set_ylabel('val bbox mAP')
    ax_map.set_ylim(0, 1)
    ax_map.grid(alpha=0.3)
    fig.suptitle(osp.basename(osp.normpath(work_dir)))
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def format_metrics(metrics: Dict[str, float], classwise: Optional[Dict[str, float]] = None) -> str:
    """The COCO bbox numbers as a small text table."""
    lines = ['| metric | value |', '| --- | --- |']
    lines += [f'| {label} | {metrics[f"coco/{key}"]:.3f} |' for key, label in COCO_KEYS
              if f'coco/{key}' in metrics]
    for name, ap in (classwise or {}).items():
        lines.append(f'| AP {name} | {ap:.3f} |')
    return '\n'.join(lines)


def draw_predictions(config: str, checkpoint: str, ann_file: str, img_dir: str, out_dir: str,
                     num_images: int = 6, score_thr: float = 0.3,
                     cfg_options: Optional[dict] = None) -> List[str]:
    """Draw true boxes (green) and predictions above ``score_thr`` (red, with class and score)
    on the first ``num_images`` images of a COCO annotation file; returns the written paths."""
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model = init_detector(cfg, checkpoint, device='cpu')
    classes = model.dataset_meta['classes']
    with open(ann_file) as f:
        coco = json.load(f)
    cat_names = {c['id']: c['name'] for c in coco['categories']}
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for image in coco['images'][:num_images]:
        path = osp.join(img_dir, image['file_name'])
        result = inference_detector(model, path).pred_instances
        img = Image.open(path).convert('RGB')
        draw = ImageDraw.Draw(img)
        for ann in coco['annotations']:
            if ann['image_id'] == image['id']:
                x, y, w, h = ann['bbox']
                draw.rectangle([x, y, x + w, y + h], outline=(0, 255, 0), width=2)
                draw.text((x + 2, y + h - 12), cat_names[ann['category_id']], fill=(0, 255, 0))
        keep = result.scores >= score_thr
        for box, label, score in zip(result.bboxes[keep].tolist(), result.labels[keep].tolist(),
                                     result.scores[keep].tolist()):
            draw.rectangle(box, outline=(255, 0, 0), width=2)
            draw.text((box[0] + 2, box[1] + 1), f'{classes[label]} {score:.2f}', fill=(255, 0, 0))
        out = osp.join(out_dir, image['file_name'].rsplit('.', 1)[0] + '.png')
        img.save(out)
        written.append(out)
    return written


def contact_sheet(paths: Sequence[str], out_png: str, columns: int = 3) -> str:
    """Tile images into one PNG."""
    images = [Image.open(p) for p in paths]
    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new('RGB', (w * columns, h * rows), (255, 255, 255))
    for i, img in enumerate(images):
        sheet.paste(img, ((i % columns) * w, (i // columns) * h))
    sheet.save(out_png)
    return out_png
