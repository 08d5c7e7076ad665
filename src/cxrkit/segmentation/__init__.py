"""Anatomical segmentation with landmarks: training, inference to CheXmask's format."""
