"""Pure metric functions shared by the tasks: AUROC + bootstrap, IoU/IoBB, Dice/Hausdorff."""
