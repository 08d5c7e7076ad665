"""Datasets: NIH ChestX-ray14 metadata, boxes and splits; CheXmask CSVs; torch Dataset wrappers."""
