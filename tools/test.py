"""Test a detector (mmdet) or classifier (mmpretrain) checkpoint: ``python tools/test.py CONFIG
CHECKPOINT [--work-dir DIR] [--out results.pkl] [--show-dir vis] [--cfg-options k=v ...]``."""
import sys

from mnet_backbone.openmmlab.commands import run_cli, test

if __name__ == '__main__':
    sys.exit(run_cli(test))
