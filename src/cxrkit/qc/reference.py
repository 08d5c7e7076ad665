"""RCA reference sets: images with known masks of the right lung, left lung and heart.

Three kinds, all in the same :class:`ReferenceSet`:

* **shipped** (the default): a small set inside the package, ``cxrkit/qc/data/reference_nih.npz`` with
  its card ``reference_nih.json`` (provenance, license, selection, sha256; checked on every load):
  NIH ChestX-ray14 images (public, no restrictions) with the masks of cxrkit's own shipped
  ``hybridgnet``, selected and checked (see docs/qc.md). Stored as it is used: images at
  ``image_size`` as uint8, masks at ``mask_size`` as packed bits, in the square space below.
* **JSRT** (the optional expert set): :data:`DEFAULT_JSRT_IDS`, a fixed subset of 16 images of the JSRT
  *training* split (every 11th id of the sorted 174, so the validation and test images never serve as
  references) with their SCR expert masks. JSRT's terms allow research use but not redistribution, so it
  is read from a local JSRT folder (the layout of :mod:`cxrkit.data.jsrt`) given as ``--reference DIR``
  or the ``CXRKIT_RCA_REFERENCE`` environment variable. Nothing is ever downloaded, and library code
  never looks for a developer's shared data folder.
* **your own**: a folder ``images/<id>.png`` + ``masks/{right_lung,left_lung,heart}/<id>.png``
  (0/255, same size as the image; "right" = the patient's right = image left); all of its images are
  used, or only those listed in an optional ``reference.txt`` (one id per line); or a file written by
  :func:`save_reference_file` (``cxrkit qc-reference build``).

Everything is stored in the square space CheXmask used (pad to a centred square, resize): images at
``image_size`` (float [0, 1]) for registration, masks at ``mask_size`` (bool) for the Dice.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cxrkit.errors import CxrkitError
from cxrkit.io.atomic import write_bytes, write_text
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import load_gray8, to_uint8
from cxrkit.segmentation.infer import predict_landmarks
from cxrkit.segmentation.rows import snap_landmarks

log = logging.getLogger(__name__)

STRUCTURES = ("right_lung", "left_lung", "heart")
IMAGE_SIZE = 128
MASK_SIZE = 256

DEFAULT_JSRT_IDS: tuple[str, ...] = (
    "JPCLN002", "JPCLN018", "JPCLN034", "JPCLN048", "JPCLN064", "JPCLN078", "JPCLN094", "JPCLN112",
    "JPCLN129", "JPCLN142", "JPCLN154", "JPCNN014", "JPCNN028", "JPCNN045", "JPCNN061", "JPCNN075",
)


@dataclass
class ReferenceSet:
    """K reference images (K, 1, image_size, image_size) float [0, 1] and masks (K, 3, mask_size, mask_size)."""

    ids: tuple[str, ...]
    images: torch.Tensor
    masks: torch.Tensor
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.ids) == 0:
            raise CxrkitError(f"{self.source or 'reference set'}: no reference images")
        if self.images.shape[0] != len(self.ids) or self.masks.shape[:2] != (len(self.ids), len(STRUCTURES)):
            raise CxrkitError(f"reference set shapes do not match: {len(self.ids)} ids, images "
                              f"{tuple(self.images.shape)}, masks {tuple(self.masks.shape)}")

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, ids: Sequence[str]) -> ReferenceSet:
        """The references with these ids, in this order (an unknown id is an error naming it)."""
        where = {i: k for k, i in enumerate(self.ids)}
        unknown = [i for i in ids if i not in where]
        if unknown:
            raise CxrkitError(f"{self.source or 'reference set'}: no reference {unknown[0]!r} "
                              f"({len(unknown)} unknown of {len(ids)})")
        sel = [where[i] for i in ids]
        return ReferenceSet(tuple(ids), self.images[sel], self.masks[sel], self.source)


def to_square(image: np.ndarray, size: int, mask: bool = False) -> np.ndarray:
    """Pad a (H, W) array to a centred square and resize it to ``size`` (masks: area > 0.5)."""
    geom = SquareResize(image.shape[0], image.shape[1], size)
    if mask:
        return geom.image_to_square(image.astype(np.float32), interpolation=cv2.INTER_AREA) > 0.5
    return geom.image_to_square(image)


def query_image(image: np.ndarray, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """One image (H, W, any dtype) -> (1, 1, S, S) float [0, 1] in CheXmask's square space."""
    if image.ndim != 2:
        raise CxrkitError(f"expected a 2-D grayscale image, got shape {image.shape}")
    img8 = image if image.dtype == np.uint8 else to_uint8(image)
    return torch.from_numpy(to_square(img8, image_size).astype(np.float32) / 255.0)[None, None]


def query_masks(masks: dict[str, np.ndarray], shape: tuple[int, ...], mask_size: int = MASK_SIZE) -> torch.Tensor:
    """The three masks (bool, each of the image's ``shape``) -> (1, 3, M, M) bool in the square space."""
    missing = [s for s in STRUCTURES if s not in masks]
    if missing:
        raise CxrkitError(f"masks lack {missing}; expected keys {list(STRUCTURES)}")
    for s in STRUCTURES:
        if masks[s].shape != tuple(shape):
            raise CxrkitError(f"mask {s!r} has shape {masks[s].shape}, the image {tuple(shape)}")
    return torch.from_numpy(np.stack([to_square(np.asarray(masks[s], bool), mask_size, mask=True)
                                      for s in STRUCTURES]))[None]


def prepare_query(image: np.ndarray, masks: dict[str, np.ndarray],
                  image_size: int = IMAGE_SIZE, mask_size: int = MASK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`query_image` and :func:`query_masks` of one image and its masks."""
    return query_image(image, image_size), query_masks(masks, image.shape, mask_size)


def load_reference(root: str | os.PathLike, ids: tuple[str, ...] | None = None,
                   image_size: int = IMAGE_SIZE, mask_size: int = MASK_SIZE) -> ReferenceSet:
    """Read a reference folder (JSRT layout or a user's, see the module docstring), or a reference file
    written by :func:`save_reference_file` (then ``ids`` and the sizes must match the file's or be None)."""
    root = Path(root)
    if root.is_file():
        ref = load_reference_file(root)
        if ids is not None and tuple(ids) != ref.ids:
            ref = ref.subset(ids)
        if (ref.images.shape[-1], ref.masks.shape[-1]) != (image_size, mask_size):
            raise CxrkitError(f"{root}: stored at {ref.images.shape[-1]} / {ref.masks.shape[-1]} px, "
                              f"{image_size} / {mask_size} px were asked for")
        return ref
    if not (root / "images").is_dir() or not (root / "masks").is_dir():
        raise CxrkitError(f"{root}: not a reference set (expected images/ and masks/{{{','.join(STRUCTURES)}}}/)")
    if ids is None:
        listed = root / "reference.txt"
        if listed.is_file():
            ids = tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
        elif (root / "split.csv").is_file():  # the JSRT folder: the documented default subset
            ids = DEFAULT_JSRT_IDS
        else:
            ids = tuple(sorted(p.stem for p in (root / "images").glob("*.png")))
    images, masks = [], []
    for i in ids:
        path = root / "images" / f"{i}.png"
        if not path.is_file():
            raise CxrkitError(f"{root}: reference image {path.name} is missing")
        img = load_gray8(path)
        images.append(to_square(img, image_size).astype(np.float32) / 255.0)
        ms = []
        for s in STRUCTURES:
            mp = root / "masks" / s / f"{i}.png"
            if not mp.is_file():
                raise CxrkitError(f"{root}: reference mask {s}/{mp.name} is missing")
            m = load_gray8(mp) > 127
            if m.shape != img.shape:
                raise CxrkitError(f"{mp}: mask shape {m.shape} differs from the image's {img.shape}")
            ms.append(to_square(m, mask_size, mask=True))
        masks.append(np.stack(ms))
    log.info("RCA reference set: %d images from %s", len(ids), root)
    return ReferenceSet(tuple(ids), torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks)),
                        source=str(root))


SHIPPED_FILE = "reference_nih.npz"
FILE_FORMAT = "cxrkit-rca-reference/1"


def card_path(path: str | os.PathLike) -> Path:
    """The card (JSON) that belongs to a reference file: the same name with ``.json``."""
    return Path(path).with_suffix(".json")


def shipped_reference_path() -> Path:
    """Where the reference set shipped in the package lies (``cxrkit/qc/data/reference_nih.npz``)."""
    return Path(str(resources.files("cxrkit.qc").joinpath("data", SHIPPED_FILE)))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(ref: ReferenceSet) -> str:
    """Digest of what a reference set holds (ids, uint8 images, bool masks, shapes), independent of how
    the file was compressed: a rebuild from the same images and model gives the same value."""
    h = hashlib.sha256()
    h.update(json.dumps([list(ref.ids), list(ref.images.shape), list(ref.masks.shape)]).encode())
    h.update(_images_uint8(ref).tobytes())
    h.update(ref.masks.numpy().astype(bool).tobytes())
    return h.hexdigest()


def _images_uint8(ref: ReferenceSet) -> np.ndarray:
    """(K, S, S) uint8 of the float [0, 1] images (exact for images that came from uint8)."""
    return np.clip(np.rint(ref.images[:, 0].numpy().astype(np.float64) * 255), 0, 255).astype(np.uint8)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (np.load reads it) with fixed member timestamps, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(arr, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def save_reference_file(ref: ReferenceSet, path: str | os.PathLike, card: dict[str, Any]) -> dict[str, Any]:
    """Write ``ref`` as one compact ``.npz`` (ids; images (K, S, S) uint8; masks (K, 3, M, M) as bits
    packed along the last axis) and its card beside it (``card_path``), both atomically.

    ``card`` holds the provenance (free-form keys: images, masks, selection, license, intended_use,
    build_command, ...); the format, file name, ids, sizes and digests are filled in here and returned.
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise CxrkitError(f"{path}: a reference file must end in .npz")
    masks = ref.masks.numpy().astype(bool)
    data = _npz_bytes({"ids": np.array(ref.ids, dtype=str), "images": _images_uint8(ref),
                       "masks": np.packbits(masks, axis=-1), "mask_size": np.array(masks.shape[-1])})
    full = {"format": FILE_FORMAT, **card, "file": path.name, "sha256": _sha256(data),
            "content_sha256": content_sha256(ref), "count": len(ref), "ids": list(ref.ids),
            "structures": list(STRUCTURES), "image_size": int(ref.images.shape[-1]), "mask_size": int(masks.shape[-1]),
            "space": "CheXmask's square space: pad to a centred square, resize (images: area, uint8; masks: area "
                     "fraction > 0.5); right = the patient's right = image left"}
    write_bytes(path, data)
    write_text(card_path(path), json.dumps(full, indent=2) + "\n")
    log.info("RCA reference set: %d images written to %s (sha256 %s)", len(ref), path, full["sha256"][:12])
    return full


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    """The card of a reference file (its JSON), checked for the fields a loader relies on."""
    cp = card_path(path)
    try:
        card = json.loads(cp.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CxrkitError(f"{path}: its card {cp.name} is missing (a reference file needs the JSON beside it)") \
            from None
    except ValueError as exc:
        raise CxrkitError(f"{cp}: not valid JSON ({exc})") from None
    need = ("format", "sha256", "ids", "structures", "image_size", "mask_size")
    missing = [k for k in need if k not in card] if isinstance(card, dict) else list(need)
    if missing:
        raise CxrkitError(f"{cp}: not a reference card, it lacks {missing}")
    if card["format"] != FILE_FORMAT:
        raise CxrkitError(f"{cp}: format {card['format']!r}, expected {FILE_FORMAT!r}")
    if tuple(card["structures"]) != STRUCTURES:
        raise CxrkitError(f"{cp}: structures {card['structures']}, expected {list(STRUCTURES)}")
    return card


def load_reference_file(path: str | os.PathLike) -> ReferenceSet:
    """Read a reference file and verify it against its card: the file's sha256, the ids, the sizes."""
    path = Path(path)
    card = read_card(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CxrkitError(f"{path}: cannot read the reference file ({exc.strerror})") from None
    if _sha256(data) != card["sha256"]:
        raise CxrkitError(f"{path}: sha256 {_sha256(data)[:12]}... does not match its card's {card['sha256'][:12]}... "
                          "(the file was changed or damaged)")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            ids = tuple(str(i) for i in z["ids"])
            images = z["images"]
            m = int(z["mask_size"])
            masks = np.unpackbits(z["masks"], axis=-1, count=m).astype(bool)
    except (KeyError, ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
        raise CxrkitError(f"{path}: not a reference file (expected ids, images, masks, mask_size: {exc})") from None
    k, s = len(card["ids"]), int(card["image_size"])
    if ids != tuple(card["ids"]):
        raise CxrkitError(f"{path}: its ids differ from the card's")
    if images.shape != (k, s, s) or images.dtype != np.uint8 or masks.shape != (k, len(STRUCTURES), m, m) \
            or m != int(card["mask_size"]):
        raise CxrkitError(f"{path}: images {images.shape} / masks {masks.shape}, the card says {k} images at {s} px "
                          f"and masks at {card['mask_size']} px")
    log.info("RCA reference set: %d images from %s", k, path)
    return ReferenceSet(ids, torch.from_numpy(images.astype(np.float32) / 255.0)[:, None], torch.from_numpy(masks),
                        source=str(card.get("name") or path))


def shipped_reference() -> ReferenceSet:
    """The reference set shipped in the package (NIH images, hybridgnet masks; see its card)."""
    ref = load_reference_file(shipped_reference_path())
    ref.source = f"the shipped set {ref.source}"
    return ref


def resolve_reference(reference: ReferenceSet | str | os.PathLike | None = None) -> ReferenceSet:
    """A :class:`ReferenceSet` from what a user gave: a set as it is; ``"shipped"``; a folder (JSRT or
    your own) or a reference file; None: ``$CXRKIT_RCA_REFERENCE`` (any of these) or else the shipped set."""
    if isinstance(reference, ReferenceSet):
        return reference
    if reference is None or str(reference) == "":
        reference = os.environ.get("CXRKIT_RCA_REFERENCE") or "shipped"
    if str(reference) == "shipped":
        return shipped_reference()
    if not Path(reference).exists():
        raise CxrkitError(f"{reference}: not a reference set, no such file or folder (expected 'shipped', a folder "
                          "with images/ and masks/, or a .npz reference file with its card)")
    return load_reference(reference)


def build_reference(paths: Sequence[str | os.PathLike], model, image_size: int = IMAGE_SIZE,
                    mask_size: int = MASK_SIZE) -> tuple[ReferenceSet, list[dict[str, Any]]]:
    """Segment each image with ``model`` (a landmark model such as ``hybridgnet``) and keep image and masks
    in the square space: the masks are the ones ``cxrkit segment`` writes (landmarks rounded to integer
    pixels, contours filled at the original size). Returns the set (ids = file stems) and, per image, its
    file name, size and sha256."""
    if not model.card.gives("landmarks"):
        raise CxrkitError(f"{model.card.name}: a reference set is built with a landmark model (e.g. hybridgnet)")
    model.eval()
    images, masks, sources = [], [], []
    for p in map(Path, paths):
        img = load_gray8(p)
        _, m = snap_landmarks(predict_landmarks(model, [img])[0], *img.shape)
        images.append(to_square(img, image_size).astype(np.float32) / 255.0)
        masks.append(np.stack([to_square(m[s], mask_size, mask=True) for s in STRUCTURES]))
        sources.append({"id": p.stem, "file": p.name, "height": int(img.shape[0]), "width": int(img.shape[1]),
                        "sha256": _sha256(p.read_bytes())})
    if not images:
        raise CxrkitError("no images to build a reference set from")
    ids = tuple(s["id"] for s in sources)
    if len(set(ids)) != len(ids):
        raise CxrkitError(f"reference ids repeat: {sorted(i for i in ids if ids.count(i) > 1)}")
    return ReferenceSet(ids, torch.from_numpy(np.stack(images))[:, None], torch.from_numpy(np.stack(masks)),
                        source="built"), sources
