"""Multi-label classification of the 14 findings: training, evaluation, localization, lesion benchmark."""
