"""What the tools' pictures share: matplotlib (not a dependency of the package) on its file
backend, and a PNG written whole or not at all."""
from mnet_backbone.files import atomic_path


def pyplot():
    """``matplotlib.pyplot`` drawing to files (the Agg backend); ImportError without matplotlib."""
    import matplotlib  # optional: only the pictures need it
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path: str) -> str:
    """Write ``fig`` to ``path`` as a PNG (atomically) and close it; returns ``path``."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        pyplot().close(fig)
    return path
