"""Unpaired training data: folders decoded once into RAM, deterministic augmented batches."""
from engan.data.augment import augment_pair, darken_factor, random_crop
from engan.data.images import IMAGE_SUFFIXES, DataError, ImageBank, list_images, load_folder
from engan.data.prefetch import Prefetcher
from engan.data.unpaired import Batch, UnpairedBatches

__all__ = [
    "IMAGE_SUFFIXES", "DataError", "ImageBank", "list_images", "load_folder",
    "augment_pair", "darken_factor", "random_crop", "Batch", "UnpairedBatches", "Prefetcher",
]
