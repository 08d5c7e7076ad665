"""Model families; importing this package registers them all in :mod:`cxrkit.models.registry`."""

import importlib

# One module per family under cxrkit.models.families.
FAMILY_MODULES: tuple[str, ...] = ("classifiers", "ensemble", "hybridgnet", "unet", "registration")

for _name in FAMILY_MODULES:
    importlib.import_module(f"{__name__}.{_name}")

__all__ = ["FAMILY_MODULES"]
