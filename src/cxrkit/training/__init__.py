"""The training scaffold shared by the classifier, segmentation and registration trainers (:mod:`.loop`)."""

from cxrkit.training.loop import SCHEDULES, Schedule, StepLoop, generator

__all__ = ["SCHEDULES", "Schedule", "StepLoop", "generator"]
