"""``python -m mnet_backbone.weights --fetch-imagenet-graph [--sdist nudity-0.2.3.tar.gz]``: put the
real MobileNetV1 ImageNet TF graph into the local cache once (``tools/install.sh`` runs it);
without arguments, print its cached path (exit 2 with how to get it when missing)."""
import argparse
import sys

from .hub import WeightsError
from .tf_graph import fetch_imagenet_graph, imagenet_graph_path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mnet_backbone.weights", description=__doc__)
    p.add_argument("--fetch-imagenet-graph", action="store_true",
                   help="pip download nudity==0.2.3 once and cache its retrained_graph.pb")
    p.add_argument("--sdist", help="extract from this nudity-0.2.3.tar.gz instead (no download)")
    args = p.parse_args(argv)
    try:
        fetch = args.fetch_imagenet_graph or args.sdist
        print(fetch_imagenet_graph(args.sdist) if fetch else imagenet_graph_path())
    except (WeightsError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
