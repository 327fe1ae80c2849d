"""Generate the shapes classification set (class folders): python tools/make_shapes_cls_dataset.py
[--out data/shapes_cls] [--train-per-class 800] [--val-per-class 100] [--size 64] [--seed 0]"""
import argparse
import time

from mnet_backbone.shapes_cls import CLASSES, ShapesClsSpec, make_shapes_cls_dataset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--out', default='data/shapes_cls', help='output folder (<split>/<class>/)')
    p.add_argument('--train-per-class', type=int, default=ShapesClsSpec.train_per_class)
    p.add_argument('--val-per-class', type=int, default=ShapesClsSpec.val_per_class)
    p.add_argument('--size', type=int, default=ShapesClsSpec.image_size, help='image side, px')
    p.add_argument('--seed', type=int, default=ShapesClsSpec.seed)
    args = p.parse_args(argv)
    start = time.time()
    folders = make_shapes_cls_dataset(args.out, ShapesClsSpec(
        train_per_class=args.train_per_class, val_per_class=args.val_per_class,
        image_size=args.size, seed=args.seed))
    print(f'wrote {args.train_per_class} train + {args.val_per_class} val images per class of '
          f'{len(CLASSES)} classes ({", ".join(CLASSES)}) to {args.out} in '
          f'{time.time() - start:.1f}s')
    for split, path in folders.items():
        print(f'  {split}: {path}/<class>/*.jpg')


if __name__ == '__main__':
    main()
