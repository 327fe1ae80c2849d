"""MobileNetV1 for PyTorch, MMDetection 3.x and torchvision, over one model definition.

``import mnet_backbone`` registers the model with mmdet, mmpretrain and torchvision when they are
installed; the core (:mod:`mnet_backbone.model`) needs torch only.
"""
import importlib.util
import warnings

from .model import MobileNetV1, input_size, plan_blocks, scale_channels

__version__ = "0.1.0"
__all__ = ["MobileNetV1", "input_size", "plan_blocks", "scale_channels", "__version__"]


def _load_face(package: str, face: str) -> None:
    if importlib.util.find_spec(package) is None:
        return
    try:
        importlib.import_module(f"{__name__}.{face}")
    except ImportError as exc:  # a broken optional install must not break the core
        # A taken registry name (RegistryConflictError) says its own fix; anything else is a
        # broken environment.
        fix = ("" if type(exc).__name__ == "RegistryConflictError" else
               " Re-run tools/install.sh to repair the environment.")
        warnings.warn(f"mnet_backbone: {package} is installed but its adapter could not be "
                      f"loaded ({exc}); MobileNetV1 is not registered with {package}.{fix}",
                      RuntimeWarning, stacklevel=2)


_load_face("mmdet", "mmdet_plugin")
_load_face("mmpretrain", "mmpretrain_plugin")
_load_face("torchvision", "tv_models")
