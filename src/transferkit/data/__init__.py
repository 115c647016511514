"""Data for fine-tuning: labelled image folders, image arrays, augmentation."""

from transferkit.data.augment import Augmentation, get_augmentation
from transferkit.data.images import (
    IMAGE_EXTENSIONS,
    ImageFolder,
    check_arrays,
    list_images,
    load_image,
    load_images,
    scan_image_folder,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "Augmentation",
    "ImageFolder",
    "check_arrays",
    "get_augmentation",
    "list_images",
    "load_image",
    "load_images",
    "scan_image_folder",
]
