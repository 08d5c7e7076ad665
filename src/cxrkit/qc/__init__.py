"""Segmentation quality control by Reverse Classification Accuracy (RCA): reference sets, registration, estimates, the `cxrkit qc` job."""

# The public modules of this package (import them by name: ``from cxrkit.qc import rca``).
__all__ = ["natural", "rca", "reference", "register", "run", "train_registration", "validation"]
