"""The CheXmask demo section and its bundled sample."""

from __future__ import annotations

import cv2

from cxrkit.data.chexmask import iter_records
from cxrkit.demo.section import DemoContext
from cxrkit.demo.sections import chexmask as section


def test_sample_is_small_licensed_and_real():
    ctx = DemoContext(out=None)  # type: ignore[arg-type]
    folder = ctx.sample_dir / "chexmask"
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert total < 200_000
    notice = (folder / "NOTICE.md").read_text()
    assert "CC BY-NC-SA 4.0" in notice and "ngaggion/CheXmask-Database" in notice and "Gaggion" in notice
    recs = list(iter_records(folder / section.SAMPLE, validate=True))
    assert len(recs) == 4 and all(r.height == r.width == 1024 for r in recs)
    assert sum(r.dice_mean < 0.7 for r in recs) == 1  # one row shows the filter dropping a row


def test_build_writes_overlays_masks_and_table(tmp_path):
    result = section.build(DemoContext(out=tmp_path))
    assert result.title and "<table>" in result.html and "dark canvas" in result.html
    assert "NO" not in result.html.replace("NOTICE", "")  # every row: fill == RLE and round trip exact
    assert len(result.files) == 4 + 1 + 12
    for rel in result.files:
        assert (tmp_path / rel).is_file(), rel
        assert f'"{rel}"' in result.html, rel  # every written file is linked from the page
    for rel in (f for f in result.files if f.endswith("_overlay.png")):
        assert f'src="{rel}"' in result.html
        img = cv2.imread(str(tmp_path / rel))
        assert img.shape == (512, 512, 3)
    assert "kept 3 of 4 rows" in result.html
