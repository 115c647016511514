"""Data for fine-tuning: labelled image folders, image arrays, augmentation,
labelled text files and multi-hot text vectors."""

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
from transferkit.data.text import TEXT_EXTENSIONS, MultiHot, read_texts

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "Augmentation",
    "ImageFolder",
    "MultiHot",
    "check_arrays",
    "get_augmentation",
    "list_images",
    "load_image",
    "load_images",
    "read_texts",
    "scan_image_folder",
]
