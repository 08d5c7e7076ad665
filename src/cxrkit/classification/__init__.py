"""Multi-label classification of the 14 findings: training, evaluation, localization, lesion benchmark."""

# The public modules of this package (import them by name: ``from cxrkit.classification import boxes``).
__all__ = ["boxes", "cam", "evaluate", "job", "lesion_bench", "lesion_compose", "lesion_data", "lesions", "localize", "losses", "nih_training", "predict", "train"]
