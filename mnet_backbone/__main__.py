"""``python -m mnet_backbone``: the ``mnet`` command (:mod:`mnet_backbone.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
