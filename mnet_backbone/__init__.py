"""MobileNetV1 for PyTorch, MMDetection 3.x and torchvision, over one model definition."""
from .model import MobileNetV1, input_size, plan_blocks, scale_channels

__version__ = "0.1.0"
__all__ = ["MobileNetV1", "input_size", "plan_blocks", "scale_channels", "__version__"]
