"""Pure metric functions shared by the tasks: AUROC + bootstrap, IoU/IoBB, Dice/Hausdorff."""

# The public modules of this package (import them by name: ``from cxrkit.metrics import auroc``).
__all__ = ["auroc", "localization", "segmentation", "stats"]
