"""How many SLURM jobs a grid preset makes with --executor slurm (one per pretraining, recipe-selection
fine-tuning and cell fine-tuning). Usage: python docs/records/slurm/count_jobs.py [preset ...]"""

import sys

from cryomonai.experiment.preset import grid_cells, load_preset


def count(name: str) -> dict[str, int]:
    p = load_preset(name)
    ssl = [m for m in p.methods if m != "random"]
    recipes = len(p.recipe_overrides())
    fractions = len(p.selection_cells()) if recipes > 1 else 0
    arms = len(p.datasets) * len(p.methods)
    pretrain = len(p.datasets) * len(ssl) * int(p.repeats)
    selection = arms * recipes * fractions
    cells = sum(1 for _ in grid_cells(p)) - arms * fractions  # a selection run of the chosen recipe is its repeat-0 cell
    return {"pretrain": pretrain, "selection": selection, "cells": cells, "jobs": pretrain + selection + cells}


if __name__ == "__main__":
    for name in sys.argv[1:] or ["paper", "cpu", "cpu_full"]:
        print(name, count(name))
