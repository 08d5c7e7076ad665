"""Segmentation quality control: RCA and CheXmask's technical validation."""
