"""Train a detector (mmdet) or classifier (mmpretrain) config: ``python tools/train.py CONFIG
[--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...] [--launcher pytorch]``."""
import sys

from mnet_backbone.openmmlab.commands import run_cli, train

if __name__ == '__main__':
    sys.exit(run_cli(train))
