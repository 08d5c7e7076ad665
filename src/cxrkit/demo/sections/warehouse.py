"""Demo section: the bundled CheXmask rows converted to Parquet and queried with DuckDB, joined with NIH metadata.

The same commands scale to all 37.7 GB of CheXmask (streaming, flat memory, resumable; see docs/warehouse.md).
Needs the ``scale`` extra (pyarrow + duckdb); without it the section says how to install it.
"""

from __future__ import annotations

import html

from cxrkit.demo.section import DemoContext, Section
from cxrkit.errors import MissingDependencyError
from cxrkit.warehouse.convert import convert_csv
from cxrkit.warehouse.query import connect, run_query

EXAMPLE_SQL = ('SELECT c.image_index, c.ctr, c."Dice RCA (Mean)" FROM chexmask c\n'
               '  JOIN nih n ON n."Image Index" = c.image_index\n'
               '  WHERE n.Cardiomegaly = 1 AND c.ctr > 0.5 AND c."Dice RCA (Mean)" >= 0.7')
OVERVIEW_SQL = ('SELECT c.image_index, n."Finding Labels", n."Patient Age", round(c.ctr, 3) AS ctr,\n'
                '       round(c."Dice RCA (Mean)", 3) AS dice_rca_mean, c.qc_pass, c.heart_area, c.right_lung_area,\n'
                '       c.left_lung_area\n'
                '  FROM chexmask c LEFT JOIN nih n ON n."Image Index" = c.image_index ORDER BY c.image_index')


def _table(rel) -> str:
    cols = list(rel.columns)
    rows = rel.fetchall()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def build(ctx: DemoContext) -> Section:
    title = "CheXmask at scale: Parquet + DuckDB queries joined with NIH metadata"
    try:
        csv_path = ctx.sample_dir / "chexmask" / "ChestX-Ray8_sample.csv"
        metadata = ctx.sample_dir / "nih" / "Data_Entry_2017_v2020.csv.gz"
        out = ctx.out / "chexmask_parquet"
        summary = convert_csv(csv_path, out, overwrite=True)
        con = connect([out], metadata)
    except MissingDependencyError as exc:
        return Section(title=title, html=f"<p>Skipped: {html.escape(str(exc).splitlines()[0])}</p>")
    overview = _table(run_query(con, OVERVIEW_SQL))
    example = _table(run_query(con, EXAMPLE_SQL))
    rel_out = out.relative_to(ctx.out)
    body = (
        f"<p><code>cxrkit chexmask to-parquet</code> streamed the bundled CheXmask CSV ({summary.rows} rows) into "
        f"<code>{html.escape(str(rel_out))}/</code>, keeping the RLE masks and landmarks and adding per-structure "
        "areas and bounding boxes, the cardiothoracic ratio (<code>ctr</code>) and <code>qc_pass</code> "
        "(<code>Dice RCA (Mean) &gt;= 0.7</code>). <code>cxrkit query</code> then runs SQL on it with DuckDB; "
        "<code>--nih-metadata</code> adds the NIH labels as the <code>nih</code> view:</p>"
        f"<pre>cxrkit chexmask to-parquet ChestX-Ray8.csv --out chexmask_parquet/\n"
        f"cxrkit query --data chexmask_parquet/ --nih-metadata Data_Entry_2017_v2020.csv.gz \\\n"
        f"  '{html.escape(EXAMPLE_SQL)}'</pre>"
        f"<p>Images labelled Cardiomegaly with CTR &gt; 0.5 and a trusted mask:</p>{example}"
        f"<p>Every converted row beside its NIH labels:</p>{overview}"
    )
    files = [str(p.relative_to(ctx.out)) for p in sorted(out.rglob("*.parquet"))]
    return Section(title=title, html=body, files=files)
