"""CheXmask's technical validation, reproduced: HybridGNet masks vs two physicians, Dice RCA vs true Dice.

CheXmask (Gaggion et al. 2023) checked its HybridGNet masks on ~50 images per dataset whose masks two
physicians corrected by hand (``<Dataset>_<physician>_annotations.csv``). Per dataset and structure
(``right_lung``, ``left_lung``, ``heart``, and ``average``: the mean of the three per image) this module
computes:

* ``dice_vs_a``, ``dice_vs_b``: Dice of the HybridGNet mask with physician A's and B's;
* ``dice_a_vs_b``: Dice of the two physicians' masks (inter-observer agreement);
* ``dice_vs_ab_mean``: the mean of ``dice_vs_a`` and ``dice_vs_b`` (the "true Dice" against both);
* the Pearson and Spearman correlation of the row's ``Dice RCA (Mean)`` (the quality estimate that
  comes without ground truth; repaired where Padchest swapped Mean and Max, see
  :mod:`cxrkit.data.chexmask`) with each true Dice, and the mean absolute error ``|RCA - dice_vs_ab_mean|``.

Coordinates: every Dice is computed in CheXmask's ``size x size`` (1024) space, the image padded with
zeros to a centred square and resized (:class:`~cxrkit.io.geometry.SquareResize`). The physicians'
masks are 1024 x 1024. A CheXmask row stored at the image's own resolution (``Height x Width`` not
1024 x 1024) has its masks padded to a centred square and resized to 1024 with nearest neighbour first.

Matching: a physician row is matched to the CheXmask row with the same image id; failing that, the
same last path component (``basename``), then the same basename without an image extension (``stem``),
each only when exactly one CheXmask row has it. Ids listed in a ``<Dataset>_name_mapping.csv``
(``Original,New``: the physicians' anonymized name -> the dataset path) are also tried through the
mapping. On the real subsets every physician row matches its CheXmask row by the exact id (the
ChestX-Ray8 physician files already use the NIH ``Image Index``; the name mapping is not needed).
Physician rows that match no CheXmask row are never dropped silently: they are returned (and written)
in ``unmatched`` with the reason, and logged as warnings.

Array-first: :func:`to_square_space` and :func:`compare_masks` (and :func:`cxrkit.metrics.stats.pearson`,
:func:`~cxrkit.metrics.stats.spearman`) work on numpy arrays; :func:`validate_chexmask` reads the files (streaming the CheXmask CSV, which may be
several GB; only rows some physician annotated are kept in memory).
"""

from cxrkit.benchmarks.chexmask_validation.common import (
           AVERAGE,
           MATCH_LEVELS,
           STRUCTURES,
           compare_masks,
           record_masks,
           to_square_space,
)
from cxrkit.benchmarks.chexmask_validation.inputs import (
           ValidationInputs,
           discover_subsets,
           explicit_inputs,
           id_keys,
)
from cxrkit.benchmarks.chexmask_validation.report import (
           format_summary,
           plot_dice_boxplots,
           plot_rca_scatter,
           write_outputs,
)
from cxrkit.benchmarks.chexmask_validation.run import validate_chexmask
from cxrkit.benchmarks.chexmask_validation.validate import (
           ValidationResult,
           summarize,
           validate_dataset,
)

__all__ = ["AVERAGE", "MATCH_LEVELS", "STRUCTURES", "ValidationInputs", "ValidationResult", "compare_masks",
           "discover_subsets", "explicit_inputs", "format_summary", "id_keys", "plot_dice_boxplots", "plot_rca_scatter",
           "record_masks", "summarize", "to_square_space", "validate_chexmask", "validate_dataset", "write_outputs"]
