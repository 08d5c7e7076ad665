"""Preprocessing cache: decode + resize every image once into a memory-mapped uint8 array.

Layout of a cache folder::

    meta.json      the progress record (:class:`~cxrkit.io.progress.ProgressRecord`): the plan {"format":
                   "cxrkit-image-cache/2", "size": S, "count": N, "names_sha256"}; written last when the folder is made
    names.txt      one image file name per line (row i of the arrays)
    pixels.u8      uint8 memmap (N, S, S): the image padded to a centred square and area-resized to S x S
                   (:class:`~cxrkit.io.geometry.SquareResize`, the geometry of every model card, exactly as
                   :class:`~cxrkit.data.torch_datasets.NIHDataset` and inference do)
    shape.i32      int32 memmap (N, 2): original (height, width) in pixels, for mapping boxes back
    state.u8       uint8 memmap (N,): 0 = to do, 1 = done, 2 = failed (see errors.csv)
    errors.csv     image, error (one row per image that could not be decoded)

Building is parallel (a process pool writing disjoint rows of the memmap) and resumable: rows marked
done are skipped, so an interrupted build continues where it stopped. Reading needs no torch.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from cxrkit.data.locate import ImageLocator
from cxrkit.errors import InputError, UsageError
from cxrkit.io.atomic import write_text
from cxrkit.io.geometry import SquareResize
from cxrkit.io.images import load_gray8
from cxrkit.io.progress import ProgressRecord
from cxrkit.io.workers import worker_pool

log = logging.getLogger(__name__)

FORMAT = "cxrkit-image-cache/2"  # /1 stretched non-square images: rebuild those
TODO, DONE, FAILED = 0, 1, 2


class ImageCache:
    """Read access to a built cache (see module docstring). ``cache[name]`` -> uint8 (S, S)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise UsageError(f"{self.path}: not an image cache (no meta.json); build it with `cxrkit cache build`")
        try:
            meta = json.loads(meta_file.read_text())["plan"]
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"{meta_file}: not a cache record of this cxrkit (format {FORMAT!r}); rebuild it") from None
        if meta.get("format") != FORMAT:
            raise UsageError(f"{meta_file}: format {meta.get('format')!r}, expected {FORMAT!r}; rebuild the cache")
        self.size = int(meta["size"])
        self.names = (self.path / "names.txt").read_text().split("\n")[: int(meta["count"])]
        n = len(self.names)
        self.pixels = np.memmap(self.path / "pixels.u8", dtype=np.uint8, mode="r", shape=(n, self.size, self.size))
        self.shapes = np.memmap(self.path / "shape.i32", dtype=np.int32, mode="r", shape=(n, 2))
        self.state = np.memmap(self.path / "state.u8", dtype=np.uint8, mode="r", shape=(n,))
        self._index = {name: i for i, name in enumerate(self.names)}

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        i = self._index.get(name)
        return i is not None and self.state[i] == DONE

    def index(self, name: str) -> int:
        try:
            i = self._index[name]
        except KeyError:
            raise InputError(f"{self.path}: image {name!r} is not in the cache ({len(self)} images)") from None
        if self.state[i] != DONE:
            raise InputError(f"{self.path}: image {name!r} is not built (state {int(self.state[i])}; see errors.csv)")
        return i

    def __getitem__(self, name: str) -> np.ndarray:
        return np.asarray(self.pixels[self.index(name)])

    def original_shape(self, name: str) -> tuple[int, int]:
        h, w = self.shapes[self.index(name)]
        return int(h), int(w)

    @property
    def n_done(self) -> int:
        return int((self.state == DONE).sum())


def _work(args: tuple[str, int, int, list[tuple[int, str]]]) -> list[tuple[int, str | None]]:
    root, size, n, items = args
    pixels = np.memmap(Path(root) / "pixels.u8", dtype=np.uint8, mode="r+", shape=(n, size, size))
    shapes = np.memmap(Path(root) / "shape.i32", dtype=np.int32, mode="r+", shape=(n, 2))
    out: list[tuple[int, str | None]] = []
    for i, path in items:
        try:
            full = load_gray8(path)
            pixels[i] = SquareResize(full.shape[0], full.shape[1], size).image_to_square(full)
            shapes[i] = full.shape
            out.append((i, None))
        except Exception as exc:  # one bad image becomes an error row, never a crashed build
            out.append((i, f"{type(exc).__name__}: {exc}"))
    pixels.flush()
    shapes.flush()
    return out


def build_cache(
    names: Sequence[str],
    images: ImageLocator | str | os.PathLike,
    out: str | os.PathLike,
    size: int = 224,
    workers: int = 2,
    chunk: int = 64,
    progress: bool = True,
) -> ImageCache:
    """Decode and resize ``names`` (found under ``images``) into a cache at ``out``; resumes if present.

    A cache folder is tied to its ``size`` and image list: resuming with a different one is an error.
    """
    out = Path(out)
    locator = images if isinstance(images, ImageLocator) else ImageLocator(images)
    names = list(names)
    n = len(names)
    if n == 0:
        raise InputError("build_cache: no images to cache")
    out.mkdir(parents=True, exist_ok=True)
    plan = {"format": FORMAT, "size": int(size), "count": n,
            "names_sha256": hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()}
    record = ProgressRecord(out / "meta.json", plan)
    if record.path.is_file():
        record.load(hint="it holds a cache of other images or another size; use another folder")
    else:
        np.memmap(out / "pixels.u8", dtype=np.uint8, mode="w+", shape=(n, size, size)).flush()
        np.memmap(out / "shape.i32", dtype=np.int32, mode="w+", shape=(n, 2)).flush()
        np.memmap(out / "state.u8", dtype=np.uint8, mode="w+", shape=(n,)).flush()
        write_text(out / "names.txt", "\n".join(names))
        record.save()  # written last: its presence means the arrays exist
    state = np.memmap(out / "state.u8", dtype=np.uint8, mode="r+", shape=(n,))
    todo: list[tuple[int, str]] = []
    errors: dict[int, str] = {}
    for i in np.flatnonzero(state != DONE):
        name = names[i]
        if name in locator:
            todo.append((int(i), str(locator.path(name))))
        else:
            errors[int(i)] = f"not found under {locator.root}"
            state[i] = FAILED
    log.info("cache %s: %d of %d images to build (size %d, %d workers)", out, len(todo), n, size, workers)
    chunks = [(str(out), size, n, todo[k : k + chunk]) for k in range(0, len(todo), chunk)]
    bar = _progress(len(todo), progress)
    try:
        if workers <= 1:
            results: Iterable = map(_work, chunks)
            _collect(results, state, errors, bar)
        else:
            with worker_pool(workers) as pool:
                _collect(pool.map(_work, chunks), state, errors, bar)
    finally:
        state.flush()
        bar.close()
        _write_errors(out, names, errors)
    cache = ImageCache(out)
    log.info("cache %s: %d built, %d failed", out, cache.n_done, int((cache.state == FAILED).sum()))
    return cache


def _collect(results: Iterable, state: np.memmap, errors: dict[int, str], bar) -> None:
    for batch in results:
        for i, err in batch:
            if err is None:
                state[i] = DONE
                errors.pop(i, None)
            else:
                state[i] = FAILED
                errors[i] = err
        state.flush()  # after the worker flushed its rows: a done flag never points at unwritten pixels
        bar.update(len(batch))


def _write_errors(out: Path, names: Sequence[str], errors: dict[int, str]) -> None:
    previous: dict[str, str] = {}
    err_file = out / "errors.csv"
    if err_file.is_file():
        with open(err_file, newline="") as f:
            previous = {r["image"]: r["error"] for r in csv.DictReader(f)}
    state = np.memmap(out / "state.u8", dtype=np.uint8, mode="r", shape=(len(names),))
    rows = {names[i]: e for i, e in errors.items()}
    for name, e in previous.items():  # keep old failures that were not retried successfully
        idx = names.index(name) if name in names else None
        if idx is not None and state[idx] == FAILED:
            rows.setdefault(name, e)
    lines = ["image,error"] + [f'{k},"{v.replace(chr(34), chr(39))}"' for k, v in sorted(rows.items())]
    write_text(err_file, "\n".join(lines) + "\n")


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="cache", unit="img", disable=not enabled or total == 0)
