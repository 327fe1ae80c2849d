"""What the package counts as an image file, and the error for one that cannot be read.

One owner for the data sets' loaders (mmdet's checked COCO loading, mmpretrain's class folders)
and deploy's calibration folders, so they accept the same files and one ``except`` catches an
unreadable image from any of them. Imports nothing beyond the standard library.
"""

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImageError"]

# torchvision's ImageFolder extensions (lower case; the loaders compare case-insensitively).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class UnreadableImageError(OSError):
    """An image that cannot be read or decoded (or, during a run, too many of them)."""
