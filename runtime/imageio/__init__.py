"""Image files for the runtime and ``engan-infer``: decoding, encoding and listing. Torch-free.

* :mod:`~engan.runtime.imageio.decode`: :func:`read_image`, safe decoding of untrusted files
  (decompression-bomb guard, EXIF orientation, ICC profiles, 16-bit PNGs, one-line reasons);
* :mod:`~engan.runtime.imageio.encode`: :func:`write_image`, atomic writes (a file is complete
  or absent), what each format can hold, a fast 8/16-bit PNG writer;
* :mod:`~engan.runtime.imageio.listing`: :data:`IMAGE_EXTENSIONS` and :func:`list_images`,
  the one way engan finds the images of a folder.

The names below are those modules' public API, gathered here.
"""
from engan.runtime.imageio.decode import (
    DEFAULT_MAX_IMAGE_PIXELS, REASON_CORRUPT, REASON_DIRECTORY, REASON_EMPTY, REASON_FLOAT, REASON_HTML, REASON_MODE,
    REASON_NOT_FOUND, REASON_NOT_IMAGE, REASON_NOT_REGULAR, REASON_OS, REASON_PERMISSION, REASON_TEXT,
    REASON_TOO_LARGE, REASON_TRUNCATED, DecodedImage, DecodeError, Pixels, read_image,
)
from engan.runtime.imageio.encode import (
    DEFAULT_PNG_COMPRESS, EncodeError, atomic_output, compare_image, encode_image, flatten_alpha, format_for_ext,
    prepare_for_format, to_8bit, write_error, write_image, write_png16, write_png_array,
)
from engan.runtime.imageio.listing import EXT_TO_FORMAT, IMAGE_EXTENSIONS, is_image_name, list_images, walk_images

__all__ = [
    "DEFAULT_MAX_IMAGE_PIXELS", "DEFAULT_PNG_COMPRESS", "EXT_TO_FORMAT", "IMAGE_EXTENSIONS", "REASON_CORRUPT",
    "REASON_DIRECTORY", "REASON_EMPTY", "REASON_FLOAT", "REASON_HTML", "REASON_MODE", "REASON_NOT_FOUND",
    "REASON_NOT_IMAGE", "REASON_NOT_REGULAR", "REASON_OS", "REASON_PERMISSION", "REASON_TEXT", "REASON_TOO_LARGE",
    "REASON_TRUNCATED", "DecodeError", "DecodedImage", "EncodeError", "Pixels", "atomic_output", "compare_image",
    "encode_image", "flatten_alpha", "format_for_ext", "is_image_name", "list_images", "prepare_for_format",
    "read_image", "to_8bit", "walk_images", "write_error", "write_image", "write_png16", "write_png_array",
]
