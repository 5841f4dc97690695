"""GPU decoding of image batches (DATA.DECODE_DEVICE / DATA.EVAL_DECODE_DEVICE cuda).

Loader workers only read each file's bytes (``ImageListDataset(gpu_decode=True)``); the main
process hands a batch of them to ``torchvision.io.decode_jpeg(device=...)`` (nvJPEG on CUDA) and
runs the fast transform (``TensorTransform``: resize or random crop, flip, colour jitter) on the
device image by image, then normalises the stacked batch there. The augmentations are the CPU
fast path's own transform objects, so their random draws follow the same distributions.

A file goes to the CPU decoder of bct/data/image.py instead, with a warning that names it:

- in the worker, when its header says the GPU decoder may not handle it: not a JPEG (PNG, ...),
  not a baseline 8-bit JPEG with 1 or 3 components (CMYK, progressive, lossless, 12-bit), or no
  end-of-image marker (truncated; the CPU decoder then reports the error it always reports);
- in the main process, when the GPU decoder rejects it.

So every mode and every error message of the CPU path is kept. Where no GPU decoder is available
at all (no CUDA device, a torchvision without nvJPEG), ``gpu_decoding_available`` says why and the
caller decodes on the CPU in the workers as usual.
"""
import io
import warnings

import torch

from bct.data.image import BadImageError, box_pixels, decode_rgb
from bct.data.transforms import pil_to_uint8
from bct.utils.logger import get_logger

# Warnings name at most this many files per decoder; later fallbacks are only counted.
MAX_NAMED_FALLBACKS = 20
_SOF_KINDS = {0xC2: "progressive", 0xC3: "lossless", 0xC5: "differential", 0xC6: "differential progressive",
              0xC7: "differential lossless", 0xC9: "arithmetic-coded", 0xCA: "arithmetic-coded progressive",
              0xCB: "arithmetic-coded lossless", 0xCD: "differential arithmetic-coded",
              0xCE: "differential arithmetic-coded progressive", 0xCF: "differential arithmetic-coded lossless"}


def gpu_unsupported_reason(data: bytes) -> str:
    """Why the file content ``data`` should not go to the GPU JPEG decoder ("" when it may).

    Reads the JPEG markers up to the frame header: baseline or extended sequential Huffman coding,
    8-bit samples, 1 (grey) or 3 (YCbCr) components, and an end-of-image marker at the end.
    """
    if data[:2] != b"\xff\xd8":
        return "not a JPEG file"
    if data[-2:] != b"\xff\xd9":
        return "JPEG without its end-of-image marker (truncated or followed by other data)"
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return "JPEG with an unreadable header"
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length field
            pos += 2
            continue
        if marker in (0xC0, 0xC1):
            if pos + 10 > n:
                return "JPEG with a cut frame header"
            precision, components = data[pos + 4], data[pos + 9]
            if precision != 8:
                return f"{precision}-bit JPEG"
            if components not in (1, 3):
                return f"JPEG with {components} colour components (CMYK or YCCK)"
            return ""
        if marker in _SOF_KINDS:
            return f"{_SOF_KINDS[marker]} JPEG"
        if marker in (0xDA, 0xD9):
            return "JPEG without a frame header before its image data"
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return "JPEG with an unreadable header"


def _decode_jpeg(payloads, device):
    """torchvision.io.decode_jpeg in RGB on `device`, without torchvision's deprecation notice
    (repeated at every call)."""
    from torchvision.io import ImageReadMode, decode_jpeg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(payloads, mode=ImageReadMode.RGB, device=device)


_PROBED = {}


def gpu_decoding_available(device) -> str:
    """"" when decode_jpeg works on `device` (tried once per device on a tiny JPEG), else the reason."""
    device = torch.device(device)
    if device.type != "cuda":
        return f"the run's device is {device.type}, not cuda"
    if not torch.cuda.is_available():
        return "no CUDA device is available"
    key = str(device)
    if key not in _PROBED:
        from PIL import Image
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), (90, 120, 150)).save(buf, "JPEG")
        data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
        try:
            _decode_jpeg([data], device)
            _PROBED[key] = ""
        except Exception as e:  # a build without nvJPEG, a driver problem, ...
            _PROBED[key] = f"torchvision cannot decode JPEGs on {device} ({str(e).splitlines()[0][:160]})"
    return _PROBED[key]


def raw_collate(batch):
    """Collate items of ``ImageListDataset(gpu_decode=True)``: (payloads, labels int64 (B,),
    indices int64 (B,), ok bool (B,)); payloads is a list of B (tensor, note) pairs, the tensor
    being the file's bytes (uint8 (N,)) or an image the worker decoded (uint8 (3, H, W))."""
    payloads, labels, indices, oks = zip(*batch)
    return (list(payloads), torch.tensor(labels, dtype=torch.int64), torch.tensor(indices, dtype=torch.int64),
            torch.tensor(oks, dtype=torch.bool))


class BatchDecoder:
    """Decodes and transforms the payloads of a ``raw_collate`` batch on ``device``.

    ``dataset`` is the ``ImageListDataset(gpu_decode=True)`` the batch came from: its transform
    (a ``TensorTransform``), crop boxes, skip_bad setting and error messages are used.
    ``fallbacks`` counts the images decoded on the CPU.
    """

    def __init__(self, dataset, device):
        self.dataset = dataset
        self.transform = dataset.transform
        self.device = torch.device(device)
        self.fallbacks = 0

    def _note_fallback(self, index: int, reason: str) -> None:
        self.fallbacks += 1
        if self.fallbacks <= MAX_NAMED_FALLBACKS:
            more = "; further CPU fallbacks are counted, not named" if self.fallbacks == MAX_NAMED_FALLBACKS else ""
            get_logger().warning(f"{self.dataset.full_path(index)} (line {index + 1} of {self.dataset.list_name}): "
                                 f"decoded on the CPU, not the GPU: {reason}{more}")

    def _cpu_image(self, data: torch.Tensor, index: int):
        """uint8 (3, H, W) on the device, decoded in full on the CPU from bytes the GPU decoder
        rejected; None if unreadable under skip_bad (BadInputError naming file and line otherwise)."""
        try:
            img = decode_rgb(data.numpy().tobytes(), self.dataset.full_path(index))
        except BadImageError as e:
            if self.dataset.skip_bad:
                return None
            raise self.dataset.bad_image_error(e, index) from None
        return pil_to_uint8(img).to(self.device)

    def _gpu_decode(self, datas, indices):
        """Decode a list of JPEG byte tensors on the device, then crop each to its box; files the
        GPU decoder rejects are decoded on the CPU (None: unreadable under skip_bad)."""
        try:
            images = _decode_jpeg(datas, self.device)
        except RuntimeError:
            # The batch call returns nothing when one file fails: find it file by file.
            images = []
            for data, index in zip(datas, indices):
                try:
                    images.append(_decode_jpeg([data], self.device)[0])
                except RuntimeError as e:
                    self._note_fallback(index, f"the GPU decoder failed ({str(e).splitlines()[0][:120]})")
                    images.append(self._cpu_image(data, index))
        return [img if img is None else self._crop(img, index) for img, index in zip(images, indices)]

    def _crop(self, img: torch.Tensor, index: int) -> torch.Tensor:
        box = self.dataset.boxes[index] if self.dataset.boxes is not None else None
        if box is None:
            return img
        left, top, right, bottom = box_pixels(img.shape[2], img.shape[1], box)
        return img[:, top:bottom, left:right]

    def __call__(self, payloads, indices):
        """Returns (images float (B, 3, H, W) on the device, ok bool (B,) on the CPU). Items that
        failed to load under skip_bad (in the worker or here) have ok False and an all-zero image,
        as on the CPU path."""
        indices = [int(i) for i in indices]
        images = [None] * len(payloads)
        on_gpu = []
        for k, ((tensor, note), index) in enumerate(zip(payloads, indices)):
            if tensor.dim() == 3:  # decoded (and cropped) by the worker
                self._note_fallback(index, note)
                images[k] = tensor.to(self.device, non_blocking=True)
            elif tensor.numel():
                on_gpu.append(k)
        if on_gpu:
            decoded = self._gpu_decode([payloads[k][0] for k in on_gpu], [indices[k] for k in on_gpu])
            for k, img in zip(on_gpu, decoded):
                images[k] = img
        ok = torch.tensor([img is not None for img in images], dtype=torch.bool)
        size = self.transform.size
        if not ok.any():
            return torch.zeros(len(images), 3, size, size, device=self.device), ok
        good = self.transform.normalise(torch.stack([self.transform.geometry(img) for img in images
                                                     if img is not None]))
        if ok.all():
            return good, ok
        out = torch.zeros((len(images),) + tuple(good.shape[1:]), device=self.device)
        out[ok.to(self.device)] = good
        return out, ok
