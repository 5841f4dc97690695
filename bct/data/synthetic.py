"""The embedded synthetic landmark benchmark: a seeded generator of procedural "landmarks" written
in the real on-disk formats (GLDv2 training and retrieval files, Dataset.md; revisitop test sets,
docs/evaluation.md), so that every real code path of the pipeline runs on it in minutes on a CPU.

A landmark is a scene drawn once from its own seed: a row of building blocks with window grids,
arcades, bands, pilasters, roofs (gable, dome, spire, steps, battlements), towers and rose
windows, painted with a handful of material indices. Each view of it draws a fresh colouring
(hue rotation, channel permutation, inversion, contrast), a perspective placement (easy, hard,
junk or query geometry), a cluttered street background, occluders, blur and noise. Colour and
position therefore say nothing about identity; only the structure does, and the structure grammar
is shared by all landmarks, which is what lets features learnt on training landmarks transfer to
the unseen test landmarks.

Every random draw comes from a NumPy generator seeded by (seed, landmark) for a scene and by
(seed, landmark, view) for a view, so the files do not depend on the number of worker processes
or on their scheduling: the same seed gives byte-identical files (with the same Pillow/libjpeg).

Layout under the output folder (see data/README.md)::

    GLDv2/train/a/b/c/<id>.jpg, GLDv2/train_clean.csv
    GLDv2/index/a/b/c/<id>.jpg, GLDv2/index.csv
    GLDv2/test/a/b/c/<id>.jpg,  GLDv2/retrieval_solution_v2.1.csv
    ROxfordParis/<name>/jpg/<image>.jpg, ROxfordParis/<name>/gnd_<name>.pkl  (roxford5k, rparis6k, synval)
    synthetic_meta.json
"""
import csv
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from bct.utils.errors import BadInputError

# Bump whenever a change alters the generated files; a folder of another version is not reused.
# Version 2 added the pretraining pool (the landmarks that version 1 used for training, moved) and a
# benchmark training set of many landmarks with few images each; the test and validation sets are
# byte-identical to version 1's.
GENERATOR_VERSION = 2
META_NAME = "synthetic_meta.json"
REVISITED_SETS = ("roxford5k", "rparis6k", "synval")

# Side of the square canvas a scene is drawn on (material indices, 0 = not the landmark).
_SCENE = 256
_N_MATERIALS = 6
# Stored image sizes (width, height); views are rendered at twice this size and box-reduced.
_OUT_SIZES = ((128, 96), (96, 128), (128, 128))
_OUT_SIZE_P = (0.5, 0.25, 0.25)
_JPEG_QUALITY = 90
# Unusual file formats placed in the data on purpose (PIL opens images by content).
ODD_FORMATS = ("grey", "png_rgba", "png_p", "cmyk")

# Stream tags of the seed sequences, so plan, scene and view draws never share a stream. The
# benchmark's training set has a stream of its own, so its size can change without moving one draw
# of the pretraining pool or of the test and validation sets.
_PLAN, _SCENE_STREAM, _VIEW_STREAM, _TRAIN_STREAM = 0, 1, 2, 3
# Landmark ids of the main plan lie in [100000, 1000000), those of the training set above, so the
# two can never meet.
_MAIN_IDS, _TRAIN_IDS = (100_000, 900_000), (1_000_000, 900_000)


@dataclass(frozen=True)
class RevisitedSize:
    """Counts of one revisited-format set; (lo, hi) pairs are inclusive ranges per landmark."""

    landmarks: int
    queries: tuple
    easy: tuple
    hard: tuple
    junk: tuple
    distractors: int
    # Scales the occlusion, blur and viewpoint change of the hard views.
    difficulty: float


@dataclass(frozen=True)
class SizePreset:
    """How many landmarks and images each part of the benchmark holds."""

    # Pretraining pool (the synthetic counterpart of ImageNet, shared start of every model):
    # landmarks with a typical number of images, that number's range, and a few smaller ones.
    pool_landmarks: int
    pool_images: tuple
    pool_small: tuple
    # Benchmark training set (GLDv2 counterpart): many landmarks with few images each, as in GLDv2,
    # plus deliberately small landmarks (1, 2-3 and >= 4 images exercise every branch of the data
    # split).
    train_landmarks: int
    train_images: tuple
    train_small: tuple
    # GLDv2 retrieval: landmarks with queries, their index and query image ranges, index-only
    # distractor landmarks and their image range, and Ignored (non-landmark) queries.
    gld_landmarks: int
    gld_index: tuple
    gld_queries: tuple
    gld_distractors: int
    gld_distractor_images: tuple
    gld_ignored: int
    roxford5k: RevisitedSize
    rparis6k: RevisitedSize
    synval: RevisitedSize


SIZES = {
    "small": SizePreset(
        pool_landmarks=188, pool_images=(15, 30), pool_small=(1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 5, 7),
        train_landmarks=888, train_images=(4, 6), train_small=(1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 5, 7),
        gld_landmarks=30, gld_index=(4, 10), gld_queries=(1, 3), gld_distractors=50,
        gld_distractor_images=(1, 4), gld_ignored=12,
        roxford5k=RevisitedSize(20, (2, 5), (7, 11), (3, 6), (3, 5), 200, 1.2),
        rparis6k=RevisitedSize(20, (2, 5), (8, 12), (3, 5), (3, 5), 200, 1.0),
        synval=RevisitedSize(8, (2, 3), (5, 8), (3, 5), (2, 3), 80, 1.0),
    ),
    "tiny": SizePreset(
        pool_landmarks=4, pool_images=(4, 5), pool_small=(1, 2, 3, 4),
        train_landmarks=6, train_images=(4, 5), train_small=(1, 2, 3, 4),
        gld_landmarks=2, gld_index=(2, 3), gld_queries=(1, 2), gld_distractors=2,
        gld_distractor_images=(1, 2), gld_ignored=1,
        roxford5k=RevisitedSize(2, (2, 2), (1, 2), (1, 1), (1, 1), 3, 1.2),
        rparis6k=RevisitedSize(2, (2, 2), (1, 2), (1, 1), (1, 1), 3, 1.0),
        synval=RevisitedSize(2, (1, 2), (1, 2), (1, 1), (1, 1), 2, 1.0),
    ),
}


# ----------------------------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------------------------

@dataclass
class _Scene:
    label: Image.Image      # mode L, _SCENE x _SCENE, material index per pixel (0 = empty)
    mask: Image.Image       # mode L, 255 where the landmark is
    bbox: tuple             # (x0, y0, x1, y1) of the landmark on the canvas
    colours: np.ndarray     # (_N_MATERIALS + 1, 3) float base colours, row 0 unused


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """One HSV colour (all in [0, 1]) to RGB in [0, 255]."""
    k = (np.array([5.0, 3.0, 1.0]) + h * 6.0) % 6.0
    return 255.0 * (v - v * s * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0))


def _draw_windows(d, rng, box, material):
    """A grid of windows inside box=(x0, y0, x1, y1); the grid and window shape are the block's
    signature, so they are drawn from the scene seed."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8:
        return
    rows = int(rng.integers(1, max(2, min(7, h // 10) + 1)))
    cols = int(rng.integers(1, max(2, min(9, w // 8) + 1)))
    shape = rng.choice(["rect", "arch", "round", "slit", "pair"], p=[0.3, 0.3, 0.12, 0.14, 0.14])
    fw, fh = rng.uniform(0.3, 0.7), rng.uniform(0.35, 0.75)
    skip_row = int(rng.integers(0, rows)) if rows > 2 and rng.random() < 0.3 else -1
    cw, ch = w / cols, h / rows
    for r in range(rows):
        if r == skip_row:
            continue
        for c in range(cols):
            cx, cy = x0 + (c + 0.5) * cw, y0 + (r + 0.5) * ch
            ww, wh = cw * fw / 2, ch * fh / 2
            if shape == "rect":
                d.rectangle([cx - ww, cy - wh, cx + ww, cy + wh], fill=material)
            elif shape == "arch":
                ww = min(ww, wh * 0.9)
                d.rectangle([cx - ww, cy - wh + ww, cx + ww, cy + wh], fill=material)
                d.pieslice([cx - ww, cy - wh, cx + ww, cy - wh + 2 * ww], 180, 360, fill=material)
            elif shape == "round":
                rr = min(ww, wh)
                d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=material)
            elif shape == "slit":
                d.rectangle([cx - ww / 3, cy - wh, cx + ww / 3, cy + wh], fill=material)
            else:
                d.rectangle([cx - ww, cy - wh, cx - ww / 5, cy + wh], fill=material)
                d.rectangle([cx + ww / 5, cy - wh, cx + ww, cy + wh], fill=material)


def _draw_roof(d, rng, x0, x1, top, kind, material):
    w = x1 - x0
    cx = (x0 + x1) / 2
    if kind == "gable":
        d.polygon([(x0 - 2, top), (x1 + 2, top), (cx, top - w * rng.uniform(0.25, 0.6))], fill=material)
    elif kind == "dome":
        rh = w * rng.uniform(0.3, 0.55)
        d.pieslice([x0, top - rh, x1, top + rh], 180, 360, fill=material)
        lw = w * 0.08
        d.rectangle([cx - lw, top - rh - w * 0.15, cx + lw, top - rh + 2], fill=material)
    elif kind == "spire":
        sw = w * rng.uniform(0.2, 0.5)
        d.polygon([(cx - sw, top), (cx + sw, top), (cx, top - w * rng.uniform(0.8, 1.6))], fill=material)
    elif kind == "steps":
        n = int(rng.integers(2, 5))
        for i in range(n):
            inset = w * 0.5 * i / n
            d.rectangle([x0 + inset, top - (i + 1) * w * 0.07, x1 - inset, top], fill=material)
    elif kind == "battlement":
        n = int(rng.integers(3, 8))
        bw = w / (2 * n - 1)
        for i in range(n):
            d.rectangle([x0 + 2 * i * bw, top - bw * 1.2, x0 + (2 * i + 1) * bw, top], fill=material)


def _make_scene(seed: int, lid: int) -> _Scene:
    """Draw landmark ``lid``: its geometry and base colours depend on (seed, lid) only."""
    rng = _rng(seed, _SCENE_STREAM, lid)
    S = _SCENE
    label = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(label)
    ground = S - 2
    n_blocks = int(rng.integers(2, 5))
    total_w = rng.uniform(0.55, 0.95) * S
    widths = rng.dirichlet(np.full(n_blocks, 2.0)) * total_w
    x = (S - total_w) / 2
    blocks = []
    for w in widths:
        h = rng.uniform(0.2, 0.6) * S
        blocks.append((x, x + w, ground - h))
        x += w
    for x0, x1, top in blocks:
        wall = int(rng.integers(1, 4))
        d.rectangle([x0, top, x1, ground], fill=wall)
        w, h = x1 - x0, ground - top
        band = rng.random()
        if band < 0.25:
            for k in range(int(rng.integers(2, 6))):
                y = top + h * (k + 1) / 6
                d.rectangle([x0, y, x1, y + max(2, h * 0.03)], fill=6)
        elif band < 0.45:
            n = int(rng.integers(2, 7))
            for k in range(n + 1):
                px = x0 + w * k / n
                d.rectangle([px - max(1.5, w * 0.02), top, px + max(1.5, w * 0.02), ground], fill=6)
        arcade = rng.random() < 0.4
        win_bottom = ground - (h * rng.uniform(0.2, 0.35) if arcade else h * 0.08)
        _draw_windows(d, rng, (x0 + w * 0.06, top + h * 0.08, x1 - w * 0.06, win_bottom), int(rng.integers(4, 6)))
        if arcade:
            n = int(rng.integers(1, 6))
            aw = w / n
            for k in range(n):
                ax0, ax1 = x0 + aw * (k + 0.15), x0 + aw * (k + 0.85)
                r = min((ax1 - ax0) / 2, (ground - win_bottom - 2) * 0.45)
                d.rectangle([ax0, win_bottom + r + 2, ax1, ground], fill=5)
                d.pieslice([ax0, win_bottom + 2, ax1, win_bottom + 2 + 2 * r], 180, 360, fill=5)
        if rng.random() < 0.2 and w > 30:
            rr = min(w, h) * rng.uniform(0.12, 0.22)
            cx, cy = (x0 + x1) / 2, top + h * 0.3
            d.ellipse([cx - rr, cy - rr, cx + rr, cy + rr], fill=6)
            d.ellipse([cx - rr * 0.6, cy - rr * 0.6, cx + rr * 0.6, cy + rr * 0.6], fill=4)
        roof = rng.choice(["flat", "gable", "dome", "spire", "steps", "battlement"],
                          p=[0.2, 0.25, 0.15, 0.15, 0.1, 0.15])
        _draw_roof(d, rng, x0, x1, top, roof, int(rng.choice([3, 6])))
    for _ in range(int(rng.choice([0, 1, 2], p=[0.35, 0.4, 0.25]))):
        tw = S * rng.uniform(0.05, 0.12)
        tx = rng.uniform((S - total_w) / 2, (S + total_w) / 2 - tw)
        top = ground - S * rng.uniform(0.5, 0.75)
        d.rectangle([tx, top, tx + tw, ground], fill=int(rng.integers(1, 4)))
        _draw_windows(d, rng, (tx + tw * 0.25, top + 6, tx + tw * 0.75, ground - 10), 5)
        _draw_roof(d, rng, tx, tx + tw, top, rng.choice(["spire", "dome", "battlement"]), 6)
    if rng.random() < 0.35:
        # Symmetric facades are common among real landmarks.
        half = label.crop((0, 0, S // 2, S))
        label.paste(half.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (S // 2, 0))
    mask = label.point(lambda v: 255 if v else 0)
    bbox = label.getbbox() or (0, 0, S, S)
    colours = np.zeros((_N_MATERIALS + 1, 3))
    for m in range(1, _N_MATERIALS + 1):
        v = rng.uniform(0.55, 0.95) if m <= 3 else rng.uniform(0.05, 0.35) if m <= 5 else rng.uniform(0.2, 0.8)
        colours[m] = _hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.7), v)
    return _Scene(label, mask, bbox, colours)


# ----------------------------------------------------------------------------------------------
# Views
# ----------------------------------------------------------------------------------------------

def _hue_rotation(deg: float) -> np.ndarray:
    """3x3 matrix rotating RGB colours about the grey axis by ``deg`` degrees."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    k = 1.0 / 3.0
    r = math.sqrt(k)
    return np.array([
        [c + (1 - c) * k, k * (1 - c) - r * s, k * (1 - c) + r * s],
        [k * (1 - c) + r * s, c + (1 - c) * k, k * (1 - c) - r * s],
        [k * (1 - c) - r * s, k * (1 - c) + r * s, c + (1 - c) * k],
    ])


# How strongly each kind of view departs from a frontal, clean picture of the landmark:
# scale = the landmark's size as a fraction of the largest size that fits the frame (a range; two
# ranges for hard views: a close-up crop or a small, oblique view), persp = foreshortening, rot =
# rotation std (degrees), shift = how far the centre may move into the free room (0 = centred),
# occ = occluder count range, occ_size = occluder extent (fraction of the frame), blur = Gaussian
# radius range (stored pixels). Hard views scale persp, rot, occ_size and blur by the set's
# difficulty.
_GEOMETRY = {
    "query": dict(scale=((0.75, 0.92),), persp=0.04, rot=1.5, shift=0.2, occ=(0, 1), occ_size=0.12, blur=(0.0, 0.4)),
    "easy": dict(scale=((0.75, 0.95),), persp=0.05, rot=1.5, shift=0.2, occ=(0, 1), occ_size=0.15, blur=(0.0, 0.5)),
    "hard": dict(scale=((1.05, 1.3), (0.5, 0.65)), persp=0.18, rot=5.0, shift=1.0, occ=(1, 3), occ_size=0.25,
                 blur=(0.3, 1.5)),
    "junk": dict(scale=((0.09, 0.16), (0.5, 0.9)), persp=0.2, rot=6.0, shift=1.0, occ=(0, 2), occ_size=0.2,
                 blur=(0.0, 1.0)),
    "clutter": dict(occ=(1, 4), occ_size=0.25, blur=(0.0, 1.0)),
}
# Share of easy views among training and GLDv2 index / test images (the rest are hard). Sized with
# the probe of data/README.md: more hard views (or more geometric change) and a resnet18 trained
# from scratch for a few CPU minutes no longer learns features that transfer.
_P_MIXED_EASY = 0.85
# Background skyline: number of anonymous buildings and of trees (ranges).
_CLUTTER = dict(buildings=(0, 2), trees=(0, 3))


def _view_colours(rng, base: np.ndarray) -> np.ndarray:
    """A strong per-view recolouring of the material colours: (M, 3) -> (M, 3) in [0, 255]."""
    col = base + rng.normal(0.0, 12.0, base.shape)
    col = col @ _hue_rotation(rng.uniform(0.0, 360.0)).T
    col = col[:, rng.permutation(3)]
    if rng.random() < 0.3:
        col = 255.0 - col
    mean = col[1:].mean()
    col = (col - mean) * rng.uniform(0.7, 1.2) + mean + rng.uniform(-30.0, 30.0)
    return np.clip(col, 0.0, 255.0)


def _perspective_coeffs(dst: np.ndarray, src: np.ndarray) -> tuple:
    """PIL PERSPECTIVE coefficients mapping output points ``dst`` (4, 2) to input points ``src``."""
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(dst, src)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -x * u, -y * u]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -x * v, -y * v]
        b[2 * i], b[2 * i + 1] = u, v
    return tuple(np.linalg.solve(a, b))


def _sample_quad(rng, geom: str, W: float, H: float, aspect: float, difficulty: float) -> np.ndarray:
    """Where the landmark's bounding box lands in a W x H frame: corners (4, 2) in order
    top-left, top-right, bottom-right, bottom-left."""
    g = _GEOMETRY[geom]
    lo, hi = g["scale"][int(rng.integers(0, len(g["scale"])))]
    scale = rng.uniform(lo, hi)
    boost = difficulty if geom == "hard" else 1.0
    persp, rot = g["persp"] * boost, g["rot"] * boost
    k = scale * min(W / aspect, H)
    w, h = k * aspect, k
    t, u = rng.uniform(-persp, persp), rng.uniform(-persp / 2, persp / 2)
    quad = np.array([[-w / 2 * (1 - abs(t) / 2) * (1 - u), -h / 2 * (1 - t)],
                     [w / 2 * (1 - abs(t) / 2) * (1 - u), -h / 2 * (1 + t)],
                     [w / 2 * (1 - abs(t) / 2) * (1 + u), h / 2 * (1 + t)],
                     [-w / 2 * (1 - abs(t) / 2) * (1 + u), h / 2 * (1 - t)]])
    quad += rng.normal(0.0, 0.01 * max(w, h), quad.shape)
    a = math.radians(rng.normal(0.0, rot))
    quad = quad @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
    # Free room for the centre: inside the frame for a landmark smaller than it; for a close-up
    # (landmark larger than the frame) the frame stays inside the landmark, a crop of it.
    cx = W / 2 + rng.uniform(-1, 1) * g["shift"] * abs(W - w) / 2
    cy = H / 2 + rng.uniform(-1, 1) * g["shift"] * abs(H - h) / 2
    if geom == "junk" and scale > 0.3:
        # Mostly cut off: only 8-22 % of the landmark's width or height is inside the frame.
        f = rng.uniform(0.08, 0.22)
        side = int(rng.integers(0, 4))
        if side == 0:
            cx = -w / 2 + f * w
        elif side == 1:
            cx = W + w / 2 - f * w
        elif side == 2:
            cy = -h / 2 + f * h
        else:
            cy = H + h / 2 - f * h
    return quad + np.array([cx, cy])


def _random_colour(rng) -> tuple:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _background(rng, W: int, H: int) -> Image.Image:
    """Sky gradient, ground, and a far skyline of plain buildings and trees."""
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ramp = np.linspace(0.0, 1.0, H)[:, None, None]
    column = Image.fromarray((top * (1 - ramp) + bottom * ramp).astype(np.uint8), "RGB")
    img = column.resize((W, H), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(img)
    horizon = H * rng.uniform(0.55, 0.85)
    d.rectangle([0, horizon, W, H], fill=_random_colour(rng))
    for _ in range(_between(rng, _CLUTTER["buildings"])):
        bw, bh = W * rng.uniform(0.08, 0.3), H * rng.uniform(0.1, 0.4)
        bx = rng.uniform(-bw / 2, W - bw / 2)
        d.rectangle([bx, horizon - bh, bx + bw, horizon], fill=_random_colour(rng))
    for _ in range(_between(rng, _CLUTTER["trees"])):
        r = W * rng.uniform(0.03, 0.1)
        tx = rng.uniform(0, W)
        d.ellipse([tx - r, horizon - 2.5 * r, tx + r, horizon - 0.3 * r], fill=_random_colour(rng))
    return img


def _occluders(rng, img: Image.Image, n: int, size: float):
    """Foreground clutter in front of the landmark: trees, people, cars, poles, blobs; ``size`` is
    their typical extent as a fraction of the frame."""
    W, H = img.size
    d = ImageDraw.Draw(img)
    for _ in range(n):
        kind = rng.choice(["tree", "person", "car", "pole", "blob"])
        col = _random_colour(rng)
        s = size * rng.uniform(0.6, 1.4) * min(W, H)
        x, y = rng.uniform(0, W), rng.uniform(H * 0.4, H)
        if kind == "tree":
            d.rectangle([x - s * 0.06, y - s * 0.5, x + s * 0.06, y + s * 0.5], fill=_random_colour(rng))
            d.ellipse([x - s * 0.4, y - s * 0.9, x + s * 0.4, y - s * 0.1], fill=col)
        elif kind == "person":
            d.ellipse([x - s * 0.08, y - s * 0.6, x + s * 0.08, y - s * 0.44], fill=col)
            d.rounded_rectangle([x - s * 0.14, y - s * 0.42, x + s * 0.14, y + s * 0.2], radius=s * 0.05, fill=col)
        elif kind == "car":
            d.rounded_rectangle([x - s * 0.5, y - s * 0.25, x + s * 0.5, y + s * 0.1], radius=s * 0.08, fill=col)
            for wx in (x - s * 0.3, x + s * 0.3):
                d.ellipse([wx - s * 0.1, y, wx + s * 0.1, y + s * 0.2], fill=(20, 20, 20))
        elif kind == "pole":
            d.rectangle([x - s * 0.03, y - s * 1.2, x + s * 0.03, H], fill=col)
            if rng.random() < 0.5:
                d.rectangle([x - s * 0.2, y - s * 1.2, x + s * 0.2, y - s * 0.9], fill=_random_colour(rng))
        else:
            pts = []
            for a in np.linspace(0, 2 * math.pi, 7, endpoint=False):
                rx, ry = rng.uniform(0.5, 1.0), rng.uniform(0.5, 1.0)
                pts.append((x + s * 0.5 * math.cos(a) * rx, y + s * 0.5 * math.sin(a) * ry))
            d.polygon(pts, fill=col)


def _render_view(scene, seed: int, lid: int, view: int, kind: str, difficulty: float):
    """Render one view; returns (RGB image at its stored size, query box [x1, y1, x2, y2] in
    stored pixels or None). ``kind``: easy, hard, junk, query, mixed (training / index images),
    or clutter (no landmark, ``scene`` None)."""
    rng = _rng(seed, _VIEW_STREAM, lid, view)
    W, H = _OUT_SIZES[int(rng.choice(len(_OUT_SIZES), p=_OUT_SIZE_P))]
    W2, H2 = 2 * W, 2 * H
    img = _background(rng, W2, H2)
    box = None
    geom = kind
    if kind == "mixed":
        geom = "easy" if rng.random() < _P_MIXED_EASY else "hard"
    if scene is not None:
        bx0, by0, bx1, by1 = scene.bbox
        quad = _sample_quad(rng, geom, W2, H2, (bx1 - bx0) / (by1 - by0), difficulty)
        palette = np.zeros((256, 3), np.uint8)
        palette[: _N_MATERIALS + 1] = _view_colours(rng, scene.colours).astype(np.uint8)
        painted = scene.label.copy()
        painted.putpalette(palette.reshape(-1).tolist())
        src = painted.convert("RGB")
        src.putalpha(scene.mask)
        corners = np.array([[bx0, by0], [bx1, by0], [bx1, by1], [bx0, by1]], dtype=np.float64)
        # Warp only the part of the frame the landmark covers (the cost is per output pixel).
        ox, oy = (int(max(0, math.floor(v))) for v in quad.min(axis=0))
        ex, ey = int(min(W2, math.ceil(quad[:, 0].max()))), int(min(H2, math.ceil(quad[:, 1].max())))
        if ex > ox and ey > oy:
            warped = src.transform((ex - ox, ey - oy), Image.Transform.PERSPECTIVE,
                                   _perspective_coeffs(quad - [ox, oy], corners),
                                   Image.Resampling.BILINEAR, fillcolor=(0, 0, 0, 0))
            img.paste(warped, (ox, oy), warped)
        if kind == "query":
            lo, hi = quad.min(axis=0) / 2, quad.max(axis=0) / 2
            box = [float(max(0.0, lo[0])), float(max(0.0, lo[1])), float(min(W, hi[0])), float(min(H, hi[1]))]
    g = _GEOMETRY[geom]
    boost = difficulty if geom == "hard" else 1.0
    _occluders(rng, img, _between(rng, g["occ"]), g["occ_size"] * boost)
    img = img.reduce(2)
    blur = rng.uniform(g["blur"][0], g["blur"][1] * boost)
    if blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    # Side lighting (a brightness ramp in a random direction) and sensor noise.
    ang = rng.uniform(0, 2 * math.pi)
    xs, ys = np.linspace(-1, 1, W, dtype=np.float32), np.linspace(-1, 1, H, dtype=np.float32)
    strength = rng.uniform(0.0, 0.3)
    gain = 1.0 + strength * (math.cos(ang) * xs[None, :] + math.sin(ang) * ys[:, None])
    arr = np.asarray(img, dtype=np.float32) * gain[:, :, None]
    arr += rng.standard_normal((H, W, 3), dtype=np.float32) * rng.uniform(0.0, 6.0)
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB"), box


def _save(img: Image.Image, path: str, fmt: str):
    """Write ``img`` to ``path`` (always named .jpg) in the given storage format."""
    if fmt == "jpeg":
        img.save(path, "JPEG", quality=_JPEG_QUALITY)
    elif fmt == "grey":
        img.convert("L").save(path, "JPEG", quality=_JPEG_QUALITY)
    elif fmt == "cmyk":
        img.convert("CMYK").save(path, "JPEG", quality=_JPEG_QUALITY)
    elif fmt == "png_rgba":
        # Web data sometimes serves PNG bytes under a .jpg name; the top-left corner is half
        # transparent so that the alpha channel matters to a decoder.
        rgba = img.convert("RGBA")
        alpha = Image.new("L", img.size, 255)
        ImageDraw.Draw(alpha).rectangle([0, 0, img.size[0] // 3, img.size[1] // 3], fill=128)
        rgba.putalpha(alpha)
        rgba.save(path, "PNG")
    elif fmt == "png_p":
        img.quantize(64).save(path, "PNG")
    else:
        raise ValueError(f"unknown storage format {fmt!r}")


def _render_task(task):
    """Worker entry: draw one scene (unless clutter) and write all of its views.
    task = (seed, root, lid, difficulty, [(relpath, view, kind, fmt), ...]);
    returns [(relpath, query box or None), ...]."""
    seed, root, lid, difficulty, views = task
    scene = None if all(v[2] == "clutter" for v in views) else _make_scene(seed, lid)
    out = []
    for relpath, view, kind, fmt in views:
        img, box = _render_view(None if kind == "clutter" else scene, seed, lid, view, kind, difficulty)
        path = os.path.join(root, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _save(img, path, fmt)
        out.append((relpath, box))
    return out


# ----------------------------------------------------------------------------------------------
# Plan: which landmark, view, kind, file name and format every image gets
# ----------------------------------------------------------------------------------------------

def _image_id(seed: int, lid: int, view: int) -> str:
    """16 lowercase hex characters, unique per (seed, landmark, view), spread like GLDv2 ids."""
    return hashlib.blake2b(f"{seed}:{lid}:{view}".encode(), digest_size=8).hexdigest()


def _gld_path(sub: str, image_id: str) -> str:
    return f"GLDv2/{sub}/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


POOL_DIR, POOL_LIST = "Pretrain", "pretrain_list.txt"


def _pool_path(image_id: str) -> str:
    return f"{POOL_DIR}/train/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg"


def _between(rng, lo_hi) -> int:
    return int(rng.integers(lo_hi[0], lo_hi[1] + 1))


class _Plan:
    """Collects the render tasks and the file tables that describe them."""

    def __init__(self, seed: int, size: SizePreset):
        self.seed = seed
        self.size = size
        self.rng = _rng(seed, _PLAN)
        n_lids = self._count_landmarks(size)
        # Arbitrary, non-contiguous landmark ids; one namespace for every part, so a landmark
        # (which is its scene) can never be in two parts.
        self.lids = iter(int(v) for v in self.rng.choice(_MAIN_IDS[1], n_lids, replace=False) + _MAIN_IDS[0])
        self.tasks = {}          # lid -> [difficulty, [(relpath, view, kind), ...]]
        self.groups = {}         # group name -> [relpath, ...] (for odd-format placement)
        self.landmarks = {}      # part -> [lid, ...]

    @staticmethod
    def _count_landmarks(size: SizePreset) -> int:
        rev = sum(r.landmarks + r.distractors for r in (size.roxford5k, size.rparis6k, size.synval))
        return (size.pool_landmarks + len(size.pool_small) + size.gld_landmarks + size.gld_distractors
                + size.gld_ignored + rev)

    def add(self, lid: int, relpath: str, kind: str, group: str, difficulty: float = 1.0) -> str:
        entry = self.tasks.setdefault(lid, [difficulty, []])
        entry[1].append((relpath, len(entry[1]), kind))
        self.groups.setdefault(group, []).append(relpath)
        return relpath

    def _landmark_rows(self, rng, lids, counts, path, group) -> list:
        rows = []
        for n in counts:
            lid = next(lids)
            ids = [_image_id(self.seed, lid, v) for v in range(n)]
            for i in ids:
                self.add(lid, path(i), "mixed", group)
            rows.append((lid, ids))
        # File order is not landmark-id order, so the preparation's sorting is exercised.
        order = rng.permutation(len(rows))
        self.landmarks[group] = sorted(r[0] for r in rows)
        return [rows[i] for i in order]

    def pool(self):
        """The pretraining pool: drawn first from the main stream."""
        s = self.size
        counts = [_between(self.rng, s.pool_images) for _ in range(s.pool_landmarks)] + list(s.pool_small)
        self.pool_rows = self._landmark_rows(self.rng, self.lids, counts, _pool_path, "pretrain")

    def train(self):
        """The benchmark's training set, from its own stream and id range."""
        s = self.size
        rng = _rng(self.seed, _TRAIN_STREAM)
        n = s.train_landmarks + len(s.train_small)
        lids = iter(int(v) for v in rng.choice(_TRAIN_IDS[1], n, replace=False) + _TRAIN_IDS[0])
        counts = [_between(rng, s.train_images) for _ in range(s.train_landmarks)] + list(s.train_small)
        self.train_rows = self._landmark_rows(rng, lids, counts, lambda i: _gld_path("train", i), "train")

    def gld_retrieval(self):
        s = self.size
        index_ids, queries, lids = [], [], []
        for _ in range(s.gld_landmarks):
            lid = next(self.lids)
            lids.append(lid)
            n_idx, n_q = _between(self.rng, s.gld_index), _between(self.rng, s.gld_queries)
            mine = []
            for v in range(n_idx + n_q):
                image_id = _image_id(self.seed, lid, v)
                if v < n_idx:
                    self.add(lid, _gld_path("index", image_id), "mixed", "gld_index")
                    mine.append(image_id)
                else:
                    self.add(lid, _gld_path("test", image_id), "mixed", "gld_test")
                    queries.append([image_id, mine])
            index_ids += mine
        for _ in range(s.gld_distractors):
            lid = next(self.lids)
            lids.append(lid)
            for v in range(_between(self.rng, s.gld_distractor_images)):
                image_id = _image_id(self.seed, lid, v)
                self.add(lid, _gld_path("index", image_id), "mixed", "gld_index")
                index_ids.append(image_id)
        n_public = max(1, round(len(queries) / 3))
        for k, i in enumerate(self.rng.permutation(len(queries))):
            queries[i].append("Public" if k < n_public else "Private")
        for _ in range(s.gld_ignored):
            # Non-landmark queries: street clutter with nothing to retrieve.
            lid = next(self.lids)
            image_id = _image_id(self.seed, lid, 0)
            self.add(lid, _gld_path("test", image_id), "clutter", "gld_test")
            queries.append([image_id, None, "Ignored"])
        self.index_ids = [index_ids[i] for i in self.rng.permutation(len(index_ids))]
        self.solution = [queries[i] for i in self.rng.permutation(len(queries))]
        self.landmarks["gldv2_retrieval"] = sorted(lids)

    def revisited(self, name: str, spec: RevisitedSize):
        base = f"ROxfordParis/{name}/jpg"
        db, qnames, qrel, gnd_kinds, lids = [], [], [], [], []
        for k in range(spec.landmarks):
            lid = next(self.lids)
            lids.append(lid)
            site = f"{name}_site{k:02d}"
            n_q = _between(self.rng, spec.queries)
            counts = {kind: _between(self.rng, getattr(spec, kind)) for kind in ("easy", "hard", "junk")}
            mine = {"easy": [], "hard": [], "junk": []}
            v = 0
            for _ in range(n_q):
                imname = f"{site}_query_{v:03d}"
                qrel.append(self.add(lid, f"{base}/{imname}.jpg", "query", f"{name}_query", spec.difficulty))
                qnames.append(imname)
                v += 1
            for kind, n in counts.items():
                for _ in range(n):
                    imname = f"{site}_{v:06d}"
                    self.add(lid, f"{base}/{imname}.jpg", kind, f"{name}_db", spec.difficulty)
                    mine[kind].append(imname)
                    db.append(imname)
                    v += 1
            gnd_kinds += [mine] * n_q
        for k in range(spec.distractors):
            lid = next(self.lids)
            imname = f"{name}_misc_{k:06d}"
            # Half of the distractors are street scenes without a landmark, half other landmarks.
            kind = "clutter" if self.rng.random() < 0.5 else "mixed"
            self.add(lid, f"{base}/{imname}.jpg", kind, f"{name}_db", spec.difficulty)
            db.append(imname)
        imlist = [db[i] for i in self.rng.permutation(len(db))]
        pos = {n: i for i, n in enumerate(imlist)}
        gnd = [{kind: np.array(sorted(pos[n] for n in m[kind]), dtype=np.int64) for kind in ("easy", "hard", "junk")}
               for m in gnd_kinds]
        setattr(self, f"rev_{name}", (imlist, qnames, qrel, gnd))
        self.landmarks[name] = sorted(lids)

    def formats(self) -> dict:
        """Storage format per relpath: JPEG, except a few greyscale JPEGs in every group, and one
        RGBA PNG, one palette PNG and one CMYK JPEG (all named .jpg) in the training sets and in
        each revisited database. The training set draws its formats from its own stream."""
        fmt = {}
        odd = {f: [] for f in ODD_FORMATS}
        groups = [(g, p, self.rng) for g, p in self.groups.items() if g != "train"]
        groups.append(("train", self.groups["train"], _rng(self.seed, _TRAIN_STREAM, 1)))
        for group, paths, rng in groups:
            extra = ["png_rgba", "png_p", "cmyk"] if group in ("pretrain", "train") or group.endswith("_db") else []
            wanted = ["grey"] * max(1, len(paths) // 60) + extra
            for relpath, f in zip(rng.choice(paths, len(wanted), replace=False), wanted):
                fmt[str(relpath)] = f
                odd[f].append(str(relpath))
        self.odd = {f: sorted(v) for f, v in odd.items()}
        return fmt


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------

def _write_csv(path: str, header: list, rows: list):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _write_tables(plan: _Plan, root: str, boxes: dict):
    gld = os.path.join(root, "GLDv2")
    os.makedirs(gld, exist_ok=True)
    _write_csv(os.path.join(gld, "train_clean.csv"), ["landmark_id", "images"],
               [(lid, " ".join(ids)) for lid, ids in plan.train_rows])
    # The pretraining pool is a plain training list, labels 0.. in ascending landmark id.
    with open(os.path.join(root, POOL_DIR, POOL_LIST), "w") as f:
        for label, (_, ids) in enumerate(sorted(plan.pool_rows)):
            f.writelines(_pool_path(i)[len(POOL_DIR) + 1:] + f" {label}\n" for i in ids)
    _write_csv(os.path.join(gld, "index.csv"), ["id"], [(i,) for i in plan.index_ids])
    _write_csv(os.path.join(gld, "retrieval_solution_v2.1.csv"), ["id", "images", "Usage"],
               [(q, "None" if imgs is None else " ".join(imgs), usage) for q, imgs, usage in plan.solution])
    for name in REVISITED_SETS:
        imlist, qnames, qrel, gnd = getattr(plan, f"rev_{name}")
        for entry, rel in zip(gnd, qrel):
            entry["bbx"] = boxes[rel]
        folder = os.path.join(root, "ROxfordParis", name)
        with open(os.path.join(folder, f"gnd_{name}.pkl"), "wb") as f:
            pickle.dump({"imlist": imlist, "qimlist": qnames, "gnd": gnd}, f, protocol=4)


def _read_meta(out: str):
    try:
        with open(os.path.join(out, META_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_meta(out: str, meta: dict):
    tmp = os.path.join(out, META_NAME + ".tmp")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out, META_NAME))


def _prepare(gld_root: str, fractions=None):
    from bct.data.prepare import prepare_gldv2
    prepare_gldv2(gld_root, fractions=fractions)


def generate_synthetic(out: str, seed: int = 0, size: str = "small", prepare: bool = True,
                       force: bool = False, workers: int = 2, log=print, fractions=None) -> dict:
    """Write the synthetic benchmark into folder ``out`` and return its metadata dict.

    An existing complete folder (``synthetic_meta.json`` present) with the same seed, size and
    generator version is reused unless ``force``; the data are rendered into a temporary sibling
    folder that replaces ``out`` only once complete. ``prepare`` runs
    ``bct.data.prepare.prepare_gldv2`` on ``out/GLDv2`` so the GLDv2 split and retrieval lists exist;
    ``fractions`` (e.g. (0.3, 0.6, 1.0)) adds the nested splits of a chain of model generations,
    also to a reused folder that lacks them.
    """
    fractions = list(fractions) if fractions else None
    if size not in SIZES:
        raise BadInputError(f"--size {size!r} is not a synthetic size; choose one of {', '.join(SIZES)}")
    if seed < 0:
        raise BadInputError(f"--seed {seed} is negative; pass a seed >= 0")
    out = os.path.abspath(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise BadInputError(f"--out {out} exists and is not a folder; the benchmark is a folder: choose another "
                            "--out (nothing was written)")
    meta = _read_meta(out)
    if meta is not None and not force:
        same = (meta.get("seed"), meta.get("size"), meta.get("generator_version")) == (seed, size, GENERATOR_VERSION)
        if not same:
            raise BadInputError(
                f"{out} holds synthetic data of seed {meta.get('seed')}, size {meta.get('size')}, generator "
                f"version {meta.get('generator_version')}, not seed {seed}, size {size}, version "
                f"{GENERATOR_VERSION}; pass --force to regenerate it or choose another --out")
        log(f"{out} already holds the synthetic benchmark (seed {seed}, size {size}); reusing it "
            "(pass --force to regenerate)")
        if prepare and (not meta.get("prepared") or (fractions and meta.get("fractions") != fractions)):
            _prepare(os.path.join(out, "GLDv2"), fractions)
            meta["prepared"] = True
            if fractions:
                meta["fractions"] = fractions
            _write_meta(out, meta)
        return meta
    if meta is None and os.path.isdir(out) and os.listdir(out) and not force:
        raise BadInputError(f"{out} exists but holds no {META_NAME} (an unfinished or unrelated folder); "
                            "pass --force to replace it or choose another --out")

    start = time.time()
    plan = _Plan(seed, SIZES[size])
    plan.pool()
    plan.train()
    plan.gld_retrieval()
    for name in REVISITED_SETS:
        plan.revisited(name, getattr(plan.size, name))
    fmt = plan.formats()

    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(out)}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in REVISITED_SETS:
            os.makedirs(os.path.join(tmp, "ROxfordParis", name, "jpg"))
        tasks = [(seed, tmp, lid, diff, [(rel, v, kind, fmt.get(rel, "jpeg")) for rel, v, kind in views])
                 for lid, (diff, views) in plan.tasks.items()]
        # Big scenes first, so the last chunks of work are short ones.
        tasks.sort(key=lambda t: -len(t[4]))
        boxes = {}
        if workers > 1:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                for result in pool.map(_render_task, tasks, chunksize=8):
                    boxes.update(result)
        else:
            for task in tasks:
                boxes.update(_render_task(task))
        _write_tables(plan, tmp, boxes)
        if os.path.lexists(out):
            old = os.path.join(parent, f".{os.path.basename(out)}.old-{os.getpid()}")
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # The lists are prepared in place (their manifest names the final folder); the metadata file,
    # written last, is what marks the folder complete.
    if prepare:
        _prepare(os.path.join(out, "GLDv2"), fractions)
    counts = {
        "pretrain_landmarks": len(plan.pool_rows),
        "pretrain_images": sum(len(ids) for _, ids in plan.pool_rows),
        "train_landmarks": len(plan.train_rows),
        "train_images": sum(len(ids) for _, ids in plan.train_rows),
        "gldv2_index_images": len(plan.index_ids),
        "gldv2_test_images": len(plan.solution),
        "gldv2_queries": {u: sum(q[2] == u for q in plan.solution) for u in ("Public", "Private", "Ignored")},
    }
    for name in REVISITED_SETS:
        imlist, qnames, _, _ = getattr(plan, f"rev_{name}")
        counts[name] = {"landmarks": len(plan.landmarks[name]), "queries": len(qnames), "database": len(imlist)}
    counts["total_images"] = len(boxes)
    meta = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "size": size,
        "prepared": bool(prepare),
        **({"fractions": fractions} if prepare and fractions else {}),
        "image_sizes": [list(s) for s in _OUT_SIZES],
        "jpeg_quality": _JPEG_QUALITY,
        "counts": counts,
        "landmarks": plan.landmarks,
        "odd_formats": plan.odd,
        "preset": asdict(plan.size),
        "workers": workers,
        "generation_seconds": round(time.time() - start, 2),
    }
    _write_meta(out, meta)
    log(f"wrote the synthetic benchmark (seed {seed}, size {size}, {counts['total_images']} images) "
        f"to {out} in {meta['generation_seconds']:.1f} s")
    return _read_meta(out)
