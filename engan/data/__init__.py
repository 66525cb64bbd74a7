"""Unpaired training data: folders decoded once into RAM, deterministic augmented batches."""
from engan.data.augment import augment_pair, darken_factor, random_crop
from engan.data.images import DataError, ImageBank, load_folder, training_images
from engan.data.prefetch import Prefetcher
from engan.data.unpaired import Batch, UnpairedBatches

#: The name engan.train checks its folders with (the listing itself is the runtime's).
list_images = training_images

__all__ = [
    "DataError", "ImageBank", "list_images", "load_folder", "training_images",
    "augment_pair", "darken_factor", "random_crop", "Batch", "UnpairedBatches", "Prefetcher",
]
