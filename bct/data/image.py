"""Image decoding to 8-bit RGB, whatever the file's mode (docs/method.md: convert every image to RGB).

The reference opened images without converting them and crashed on greyscale and CMYK files. Here
every PIL mode is mapped to RGB: transparency is composited on white, 16-bit and 32-bit integer
images are rescaled (not clipped) to 8 bits, float images are rescaled from their range.

A file that is missing, empty, truncated or undecodable raises ``BadImageError`` (a
``BadInputError``) naming the file; the caller adds the list line. PIL's
``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default (False) and the pixels are decoded in
full here, so a truncated JPEG is an error rather than an image with a grey bottom. EXIF
orientation is not applied: the revisited query boxes and the reference's features refer to the
stored pixel grid.

The fast path (``load_rgb(path, min_size)``, used by training by default) decodes a JPEG at a
reduced size: libjpeg's DCT scaling (PIL draft mode, 1/2, 1/4 or 1/8) picks the smallest scale
that keeps at least ``min_size`` pixels on each side, and an image still at least twice that
size on both sides is then shrunk by the integer factor with a box filter (``Image.reduce``). The
transform that follows never sees fewer pixels than it outputs, so the result differs from the
full decode only by the filter that did the shrinking. Other formats, and every image when
``min_size`` is None, are decoded in full.
"""
import io
import os
import stat

import numpy as np
from PIL import Image

from bct.utils.errors import BadInputError



class BadImageError(BadInputError):
    """An image file that cannot be used; ``path`` and ``reason`` let callers add the list line."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map one integer or float channel to uint8, keeping the full range of its bit depth."""
    if mode.startswith("I;16"):
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = arr * 255.0
    elif lo >= 0 and hi <= 255:
        scaled = arr
    elif lo >= 0 and hi <= 65535:
        # 16-bit data decoded as 32-bit "I" (e.g. some 16-bit PNG/TIFF files).
        scaled = arr * (255.0 / 65535.0)
    else:
        scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a decoded PIL image of any mode to mode RGB (alpha composited on white)."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _INT_MODES or mode == "F":
        grey = Image.fromarray(_to_uint8(np.asarray(img), mode), mode="L")
        return grey.convert("RGB")
    return img.convert("RGB")


def box_pixels(width: int, height: int, box):
    """Integer crop (left, top, right, bottom) of box [x1, y1, x2, y2] (pixels, floats allowed) in an
    image of width x height: outward-rounded, clamped to the image, at least one pixel."""
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(int(np.floor(x1)), 0), width - 1)
    top = min(max(int(np.floor(y1)), 0), height - 1)
    right = max(min(int(np.ceil(x2)), width), left + 1)
    bottom = max(min(int(np.ceil(y2)), height), top + 1)
    return left, top, right, bottom


def read_image_bytes(path: str) -> bytes:
    """The content of the image file at ``path``; BadImageError if it is missing, a folder or empty.

    Only regular files are opened: reading a named pipe or a device could block forever."""
    try:
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise BadImageError(path, "is a folder, not an image file")
        if not stat.S_ISREG(mode):
            kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise BadImageError(path, f"is {kind}, not a regular image file")
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BadImageError(path, "image file not found") from None
    except OSError as e:
        raise BadImageError(path, f"cannot read the file ({e.strerror or e})") from None
    if not data:
        raise BadImageError(path, "image file is empty (0 bytes)")
    return data


def decode_rgb(data: bytes, path: str, min_size=None) -> Image.Image:
    """Decode the bytes of an image file (``path`` names it in errors) to a mode-RGB PIL image.

    min_size: None (full decode) or a function (stored width, stored height) -> (width, height),
    the fewest pixels per side the caller needs; then a JPEG takes the fast path of the module
    docstring.
    """
    try:
        img = Image.open(io.BytesIO(data))
        target = None
        if min_size is not None and img.format == "JPEG":
            target = tuple(max(1, int(v)) for v in min_size(*img.size))
            img.draft(img.mode, target)
        img.load()
        img = to_rgb(img)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ... on bad data
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadImageError(path, f"cannot decode the image ({reason}); re-download or remove it") from None
    if target is not None:
        # One factor for both axes keeps the aspect ratio that an aspect-preserving resize reads.
        factor = min(img.width // target[0], img.height // target[1])
        if factor >= 2:
            img = img.reduce(factor)
    return img


def load_rgb(path: str, min_size=None) -> Image.Image:
    """Decode the image file at ``path`` and return it as a mode-RGB PIL image (in full unless
    ``min_size`` asks for the JPEG fast path, see ``decode_rgb``)."""
    return decode_rgb(read_image_bytes(path), path, min_size)
