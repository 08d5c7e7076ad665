"""Whole-dataset summary: every statistic per split, written as CSV, JSON and plots."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from cxrkit.data.nih import label_matrix
from cxrkit.io.atomic import write_text
from cxrkit.stats import demographics, labels, plots


def split_tables(df: pd.DataFrame, splits: Mapping[str, Sequence[str]] | None) -> dict[str, pd.DataFrame]:
    """``{"all": df}`` plus one sub-table per split (images matched by ``Image Index``)."""
    out = {"all": df}
    for name, images in (splits or {}).items():
        out[name] = df[df["Image Index"].isin(set(images))]
    return out


def summarize(df: pd.DataFrame, splits: Mapping[str, Sequence[str]] | None = None) -> dict:
    """JSON-ready dict of counts, prevalence, co-occurrence and demographics for each split."""
    result = {}
    for name, t in split_tables(df, splits).items():
        y = label_matrix(t)
        result[name] = {
            "images": int(len(t)),
            "patients": int(t["Patient ID"].nunique()),
            "prevalence": labels.prevalence(y).to_dict(orient="records"),
            "findings_per_image": labels.findings_per_image(y).tolist(),
            "cooccurrence": labels.cooccurrence(y).tolist(),
            "age": demographics.age_summary(t) if len(t) else {},
            "sex": demographics.categorical_distribution(t, "Patient Gender").to_dict(orient="records"),
            "view": demographics.categorical_distribution(t, "View Position").to_dict(orient="records"),
        }
    return result


def write_summary(
    df: pd.DataFrame, out: str | os.PathLike, splits: Mapping[str, Sequence[str]] | None = None, plot: bool = True
) -> list[Path]:
    """Write ``summary.json``, per-split CSVs and plots under ``out``; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def _csv(frame: pd.DataFrame, name: str, index: bool = False) -> None:
        write_text(out / name, frame.to_csv(index=index, lineterminator="\n"))
        written.append(out / name)

    tables = split_tables(df, splits)
    summary = summarize(df, splits)
    write_text(out / "summary.json", json.dumps(summary, indent=1))
    written.append(out / "summary.json")
    prev = {}
    for name, t in tables.items():
        y = label_matrix(t)
        prev[name] = labels.prevalence(y)
        _csv(prev[name], f"prevalence_{name}.csv")
        _csv(labels.cooccurrence_frame(y), f"cooccurrence_{name}.csv", index=True)
        _csv(demographics.age_distribution(t), f"age_{name}.csv")
        if plot and len(t):
            plots.plot_cooccurrence(labels.cooccurrence(y), out / f"cooccurrence_{name}.png", f"Co-occurrence ({name})")
            written.append(out / f"cooccurrence_{name}.png")
            plots.plot_demographics(t, out / f"demographics_{name}.png")
            written.append(out / f"demographics_{name}.png")
    if plot:
        plots.plot_prevalence(prev, out / "prevalence.png")
        written.append(out / "prevalence.png")
    return written
