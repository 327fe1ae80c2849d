"""Generate the shapes detection data set (COCO format): python tools/make_shapes_dataset.py
[--out data/shapes] [--num-train 800] [--num-val 200] [--size 320] [--seed 0]"""
import argparse
import time

from mnet_backbone.shapes import CLASSES, ShapesSpec, make_shapes_dataset


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--out', default='data/shapes', help='output folder (COCO layout)')
    p.add_argument('--num-train', type=int, default=ShapesSpec.num_train)
    p.add_argument('--num-val', type=int, default=ShapesSpec.num_val)
    p.add_argument('--size', type=int, default=ShapesSpec.image_size[0], help='image side, px')
    p.add_argument('--seed', type=int, default=ShapesSpec.seed)
    args = p.parse_args(argv)
    start = time.time()
    files = make_shapes_dataset(args.out, ShapesSpec(
        num_train=args.num_train, num_val=args.num_val, image_size=(args.size, args.size),
        seed=args.seed))
    print(f'wrote {args.num_train} train + {args.num_val} val images of {len(CLASSES)} classes '
          f'({", ".join(CLASSES)}) to {args.out} in {time.time() - start:.1f}s')
    for split, path in files.items():
        print(f'  {split}: {path}')


if __name__ == '__main__':
    main()
