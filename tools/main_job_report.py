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


TRUTH_COLOUR, PRED_COLOUR = (0, 200, 0), (230, 0, 0)


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _label(draw, xy, text: str, colour, font, width: int, height: int) -> None:
    """``text`` in white on a box of ``colour`` at ``xy`` (kept inside the image)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 2
    x = min(max(0, xy[0]), max(0, width - w))
    y = xy[1] - h if xy[1] - h >= 0 else xy[1]
    y = min(y, max(0, height - h))
    draw.rectangle([x, y, x + w, y + h], fill=colour)
    draw.text((x + 2 - left, y + 1 - top), text, fill=(255, 255, 255), font=font)


def compare_panels(img: Image.Image, truth: Sequence[tuple], predictions: Sequence[tuple],
                   score_thr: float, title: str = '') -> Image.Image:
    """Ground truth (left) next to the predictions with score >= ``score_thr`` (right).

    ``truth``: ``(x0, y0, x1, y1, name)``; ``predictions``: ``(x0, y0, x1, y1, name, score)``.
    Each panel says what it shows; labels are white on the box colour, sized to the image.
    """
    img = img.convert('RGB')
    w, h = img.size
    font = _font(max(11, min(w, h) // 22))
    kept = [p for p in predictions if p[5] >= score_thr]
    panels = []
    for heading, boxes, colour in (
            (f'ground truth: {len(truth)}', [(*b[:4], b[4]) for b in truth], TRUTH_COLOUR),
            (f'predicted, score >= {score_thr:.2f}: {len(kept)} of {len(predictions)}',
             [(*p[:4], f'{p[4]} {p[5]:.2f}') for p in kept], PRED_COLOUR)):
        panel = img.copy()
        draw = ImageDraw.Draw(panel)
        for *corners, _ in boxes:
            draw.rectangle(corners, outline=colour, width=max(2, min(w, h) // 160))
        for x0, y0, _, _, text in boxes:  # labels last, so no box line crosses them
            _label(draw, (x0, y0), text, colour, font, w, h)
        panels.append((heading, panel, colour))
    bar = font.size + 8 if hasattr(font, 'size') else 18
    out = Image.new('RGB', (2 * w + 4, h + bar), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for i, (heading, panel, colour) in enumerate(panels):
        out.paste(panel, (i * (w + 4), bar))
        text = f'{title}  {heading}' if title and i == 0 else heading
        draw.text((i * (w + 4) + 2, 3), text, fill=colour, font=font)
    return out


def draw_predictions(config: str, checkpoint: str, ann_file: str, img_dir: str, out_dir: str,
                     num_images: int = 6, score_thr: float = 0.3,
                     cfg_options: Optional[dict] = None) -> List[str]:
    """For the first ``num_images`` images of a COCO annotation file, the ground truth next to
    the predictions with score >= ``score_thr`` (:func:`compare_panels`); returns the paths."""
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    if not 0.0 <= score_thr <= 1.0:
        raise ValueError(f'score_thr must be in [0, 1], got {score_thr!r}')
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
        truth = [(x, y, x + w, y + h, cat_names[a['category_id']])
                 for a in coco['annotations'] if a['image_id'] == image['id']
                 for x, y, w, h in [a['bbox']]]
        preds = [(*box, classes[label], score) for box, label, score in zip(
            result.bboxes.tolist(), result.labels.tolist(), result.scores.tolist())]
        panel = compare_panels(Image.open(path), truth, preds, score_thr,
                               title=image['file_name'])
        out = osp.join(out_dir, image['file_name'].rsplit('.', 1)[0] + '.png')
        panel.save(out)
        written.append(out)
    return written


def contact_sheet(paths: Sequence[str], out_png: str, columns: int = 3,
                  legend: Optional[str] = None) -> str:
    """Tile images into one PNG, with an optional legend line above them."""
    if not paths:
        raise ValueError('contact_sheet: no images to tile')
    images = [Image.open(p) for p in paths]
    w, h = images[0].size
    rows = -(-len(images) // columns)
    font = _font(16)
    top = 26 if legend else 0
    sheet = Image.new('RGB', (w * columns + 8 * (columns - 1), h * rows + 8 * (rows - 1) + top),
                      (255, 255, 255))
    if legend:
        ImageDraw.Draw(sheet).text((4, 4), legend, fill=(0, 0, 0), font=font)
    for i, img in enumerate(images):
        sheet.paste(img, ((i % columns) * (w + 8), top + (i // columns) * (h + 8)))
    sheet.save(out_png)
    return out_png
