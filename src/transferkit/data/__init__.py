"""Data for fine-tuning: labelled image folders, images labelled by a table,
image arrays, images streamed from their files, augmentation, labelled text
files and multi-hot text vectors.

The names are imported on first use, so that checking a path (`images`)
does not import Keras.
"""

from transferkit._lazy import lazy_exports

_EXPORTS = {
    "Augmentation": "transferkit.data.augment",
    "get_augmentation": "transferkit.data.augment",
    "IMAGE_EXTENSIONS": "transferkit.data.images",
    "ImageFolder": "transferkit.data.images",
    "ImageFiles": "transferkit.data.stream",
    "Batches": "transferkit.data.stream",
    "read_ahead": "transferkit.data.stream",
    "check_arrays": "transferkit.data.images",
    "list_images": "transferkit.data.images",
    "load_image": "transferkit.data.images",
    "load_images": "transferkit.data.images",
    "scan_image_folder": "transferkit.data.images",
    "ImageTable": "transferkit.data.tables",
    "read_label_table": "transferkit.data.tables",
    "TEXT_EXTENSIONS": "transferkit.data.text",
    "MultiHot": "transferkit.data.text",
    "read_texts": "transferkit.data.text",
    "read_text_file": "transferkit.data.text",
    "TextFile": "transferkit.data.text",
}

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "Augmentation",
    "Batches",
    "ImageFiles",
    "ImageFolder",
    "ImageTable",
    "MultiHot",
    "TextFile",
    "check_arrays",
    "get_augmentation",
    "list_images",
    "load_image",
    "load_images",
    "read_ahead",
    "read_label_table",
    "read_text_file",
    "read_texts",
    "scan_image_folder",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
