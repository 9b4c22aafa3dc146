"""Datasets (digits, fashion-mnist, image-folder) and the latent cache."""

from discrete_priors.data.cache import LatentCache, load_latent_cache, save_latent_cache
from discrete_priors.data.datasets import (
    DATASETS,
    SPLITS,
    TEST_FRACTION,
    ImageData,
    class_names,
    list_image_files,
    load_dataset,
    load_image_files,
    read_idx,
    resize_images,
    split_indices,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "TEST_FRACTION",
    "ImageData",
    "LatentCache",
    "class_names",
    "list_image_files",
    "load_dataset",
    "load_image_files",
    "load_latent_cache",
    "read_idx",
    "resize_images",
    "save_latent_cache",
    "split_indices",
]
