"""The one image generator of the benchmark scripts: photo-like JPEGs in classes, with an image list.

Each image is a mix of three 1/f noise fields (the spectral falloff of natural photographs, so a
JPEG of it costs what a camera image of that size costs to decode) with a few flat blocks (walls,
windows, sky). A class is a fixed choice of fields, colours and blocks; its images are shifted,
mirrored and re-lit copies, so a network can tell the classes apart in the training benchmarks.
"""
import os

import numpy as np
from PIL import Image

from bct.utils.errors import BadInputError

__all__ = ["make_images", "save_jpeg", "write_lines"]


def _pink_fields(rng, height: int, width: int, count: int, alpha: float = 1.4) -> list:
    """`count` zero-mean unit-variance fields (height, width) with amplitude spectrum 1/f^alpha
    (alpha 1.4 gives camera-like JPEG sizes at quality 90)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx ** 2 + fy ** 2)
    freq[0, 0] = 1.0
    fields = []
    for _ in range(count):
        spec = (rng.standard_normal(freq.shape) + 1j * rng.standard_normal(freq.shape)) / freq ** alpha
        x = np.fft.irfft2(spec, s=(height, width)).astype(np.float32)
        fields.append((x - x.mean()) / x.std())
    return fields


def save_jpeg(img: np.ndarray, path: str, quality: int = 90) -> None:
    """Save a float image (H, W, 3) in [0, 1] (clipped) as an RGB JPEG."""
    Image.fromarray((np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)).save(path, quality=quality)


def write_lines(path: str, lines) -> str:
    """Write list lines to `path`; returns `path`."""
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def make_images(out_dir: str, n: int, classes: int, width: int, height: int, quality: int = 90,
                list_name: str = "benchmark_list.txt", seed: int = 0) -> str:
    """Write `n` JPEGs of width x height in `classes` classes (class by class, as even as possible)
    under out_dir/img/c<k>/<i>.jpg and the list out_dir/<list_name> of "img/c<k>/<i>.jpg <k>" lines;
    returns the list path."""
    if n < 1 or classes < 1 or width < 16 or height < 16 or not 1 <= quality <= 100:
        raise BadInputError(f"benchmark images: need >= 1 image and class, sides >= 16 px and quality 1..100, "
                            f"got {n} images, {classes} classes, {width} x {height} px, quality {quality}")
    rng = np.random.default_rng(seed)
    fields = _pink_fields(rng, height, width, 6)
    lines = []
    for c in range(classes):
        count = n // classes + (c < n % classes)
        if count == 0:
            continue
        picks = rng.choice(len(fields), 3, replace=False)
        tint = rng.uniform(0.35, 0.65, 3).astype(np.float32)
        blocks = [(int(rng.integers(0, width * 9 // 10)), int(rng.integers(height // 4, height * 15 // 16)),
                   int(rng.integers(width // 16, width * 2 // 5)), int(rng.integers(height // 10, height * 2 // 3)),
                   rng.uniform(0.1, 0.4, 3)) for _ in range(int(rng.integers(2, 6)))]
        os.makedirs(os.path.join(out_dir, "img", f"c{c}"), exist_ok=True)
        for i in range(count):
            a, b, d = (fields[j] for j in picks)
            shift = (int(rng.integers(-height // 8, height // 8 + 1)), int(rng.integers(-width // 8, width // 8 + 1)))
            lum = np.roll(a, shift, axis=(0, 1))
            if rng.random() < 0.5:
                lum = lum[:, ::-1]
            img = np.stack([lum + 0.4 * b, lum + 0.1 * d - 0.2 * b, lum - 0.4 * d], -1) * 0.15
            img += tint * rng.uniform(0.8, 1.2)
            for x0, y0, w, h, colour in blocks:
                img[y0:y0 + h, x0:x0 + w] = img[y0:y0 + h, x0:x0 + w] * 0.5 + colour
            rel = f"img/c{c}/{i}.jpg"
            save_jpeg(img, os.path.join(out_dir, rel), quality)
            lines.append(f"{rel} {c}")
    return write_lines(os.path.join(out_dir, list_name), lines)
