"""The pixel limit on encoded images, checked from the image header before any pixel is
decoded. One check for ingestion (``data.max_image_pixels``) and the model server
(``--max_image_pixels``).

PIL reads the width and height from the header when it opens an image and applies its own
decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``): a warning above it, an error
above twice it. Both become ``ImageTooLarge`` here, so an image PIL calls a bomb is refused
as too large, never decoded with a warning on stderr nor reported as corrupt.
"""
from __future__ import annotations

import io
import warnings
from typing import Optional, Tuple


class ImageTooLarge(ValueError):
    """The image declares more pixels than allowed; the message gives its size."""


def header_size(encoded: bytes) -> Optional[Tuple[int, int]]:
    """``(width, height)`` from the header of ``encoded`` (nothing is decoded), or None when
    PIL does not recognise or cannot parse the bytes. Raises ``ImageTooLarge`` when PIL's
    decompression-bomb guard refuses the image."""
    from PIL import Image

    # catch_warnings swaps the process's filter list; at worst a concurrent caller leaves
    # this one filter in place, which only turns the same PIL warning into the same error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(encoded)) as image:
                return image.size
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ImageTooLarge(f"image too large for PIL's decompression-bomb limit: {err}") from None
        except Exception:  # noqa: BLE001 - not an image PIL can open: the decoder decides
            return None


def check_pixels(encoded: bytes, max_pixels: int) -> Optional[Tuple[int, int]]:
    """Raise ``ImageTooLarge`` when ``encoded`` declares more than ``max_pixels`` pixels
    (0: PIL's guard only); returns the header's ``(width, height)``, None when unreadable."""
    size = header_size(encoded)
    if size is not None and max_pixels and size[0] * size[1] > max_pixels:
        raise ImageTooLarge(f"image of {size[0]}x{size[1]} pixels exceeds the limit of "
                            f"{max_pixels} pixels")
    return size
