"""The picture of ``tools/flops.py --plot``: mult-adds vs parameters of the paper's 16 models.

The counts are the library's (:func:`mnet_backbone.cost.cost_grid`); the drawing needs
matplotlib, which the package does not depend on.
"""
from plots import pyplot, save_png

from mnet_backbone.cost import cost_grid
from mnet_backbone.model import PAPER_RESOLUTIONS


def plot_cost_grid(path: str) -> str:
    """PNG of mult-adds vs parameters for the 16 alpha x resolution models; returns ``path``."""
    fig, ax = pyplot().subplots(figsize=(7, 5))
    grid = cost_grid()
    for resolution in PAPER_RESOLUTIONS:
        pts = [(c.params / 1e6, c.mult_adds / 1e6, a) for a, r, c in grid if r == resolution]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{resolution}px")
        for params, ma, a in pts:
            ax.annotate(f"{a}", (params, ma), textcoords="offset points", xytext=(4, 2),
                        fontsize=7)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("mult-adds (M)")
    ax.set_yscale("log")
    ax.set_title("MobileNetV1: width multiplier (labels) x resolution")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(title="input")
    fig.tight_layout()
    return save_png(fig, path)
