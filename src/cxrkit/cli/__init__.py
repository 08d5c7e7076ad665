"""The ``cxrkit`` console script: one module per command group, each with ``register(subparsers)``."""
