"""Preprocessing cache: built in parallel, resumable, identical to on-the-fly decoding."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_nih import make_tiny_nih

from cxrkit.data.cache import DONE, ImageCache, build_cache
from cxrkit.errors import CxrkitError
from cxrkit.io.geometry import resize_area
from cxrkit.io.images import load_gray8


def test_cache_matches_decoding_and_resumes(tmp_path):
    nih = make_tiny_nih(tmp_path, n_patients=4)
    names = nih["names"] + ["missing.png"]
    cache = build_cache(names, nih["images"], tmp_path / "c", size=32, workers=2, chunk=2, progress=False)
    assert cache.n_done == len(names) - 1
    for n in nih["names"]:
        np.testing.assert_array_equal(cache[n], resize_area(load_gray8(nih["images"] / n), 32))
        assert cache.original_shape(n) == (64, 64)
    assert "missing.png" not in cache
    with pytest.raises(CxrkitError, match="missing.png.*not built"):
        cache["missing.png"]
    assert "missing.png" in (tmp_path / "c" / "errors.csv").read_text()

    # Simulate an interrupted build: mark two rows as not done, zero them, rebuild.
    state = np.memmap(tmp_path / "c" / "state.u8", dtype=np.uint8, mode="r+", shape=(len(names),))
    state[:2] = 0
    state.flush()
    pixels = np.memmap(tmp_path / "c" / "pixels.u8", dtype=np.uint8, mode="r+", shape=(len(names), 32, 32))
    pixels[:2] = 0
    pixels.flush()
    again = build_cache(names, nih["images"], tmp_path / "c", size=32, workers=1, progress=False)
    assert (np.asarray(again.state[: len(names) - 1]) == DONE).all()
    np.testing.assert_array_equal(again[names[0]], resize_area(load_gray8(nih["images"] / names[0]), 32))


def test_cache_refuses_other_size(tmp_path):
    nih = make_tiny_nih(tmp_path, n_patients=2)
    build_cache(nih["names"], nih["images"], tmp_path / "c", size=32, workers=1, progress=False)
    with pytest.raises(CxrkitError, match=r"differs in size: \{.size.: 32\} vs \{.size.: 16\}"):
        build_cache(nih["names"], nih["images"], tmp_path / "c", size=16, workers=1, progress=False)
    with pytest.raises(CxrkitError, match="not an image cache"):
        ImageCache(tmp_path)


def test_cli_cache_build(tmp_path, capsys):
    from cxrkit.cli.main import main

    nih = make_tiny_nih(tmp_path, n_patients=2)
    assert main(["cache", "build", "--images", str(nih["images"]), "--out", str(tmp_path / "c"), "--size", "16"]) == 0
    assert "4 images cached at 16px, 0 failed" in capsys.readouterr().out
