"""The grid extends its recipe space on validation where the chosen rate sits at the edge (``extend_edges``)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from cryomonai.errors import ConfigError
from cryomonai.experiment.edges import Extension, propose, read_extensions, recipe_overrides
from cryomonai.experiment.graph import RunGraph
from cryomonai.experiment.grid import SELECTION_COLUMNS, GridPreset, GridRunner, run_grid
from cryomonai.experiment.preset import GridCell, grid_cells
from cryomonai.experiment.training import GridTrainer

EDGES = {"factor": 3, "max_steps": 2}
SPACE = {"adam_1e-4": {"lr": 0.0001}, "adam_1e-3": {"lr": 0.001}, "adam_3e-3": {"lr": 0.003}}


def _tiny(**kw) -> GridPreset:
    spec = dict(
        name="tiny",
        datasets=[{"name": "snr_1", "snr": 1.0, "n_per_class": 5, "box": 8, "binning": 2, "classes": ["1bxn", "1qvr", "3cf3"],
                   "max_shift": 1.0, "n_neighbours": 1, "workers": 0}],
        methods=["random"], label_fractions=[0.5, 1.0], repeats=1, seed=3, readouts=False,
        common={"batch_size": 4}, pretrain={"epochs": 1}, finetune={"epochs": 1}, report={"gradcam_examples": 0},
        recipes=SPACE, selection_fractions=[1.0], extend_edges=EDGES,
    )
    spec.update(kw)
    return GridPreset(**spec)


def _runner(tmp_path, rows, **kw) -> GridRunner:
    """A runner whose selection.csv already holds ``rows`` = [(recipe, fraction, best validation accuracy)]."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    runner = GridRunner(_tiny(**kw), tmp_path, progress=False)
    pd.DataFrame([{"dataset": "snr_1", "method": "random", "recipe": r, "label_fraction": f, "repeat": 0,
                   "pretrain_seed": np.nan, "best_val_accuracy": v, "chosen": False, "run_dir": "x"} for r, f, v in rows],
                 columns=SELECTION_COLUMNS).to_csv(runner.layout.selection, index=False)
    return runner


def _extend(runner) -> list:
    runner.choose_recipe("snr_1", "random")
    return runner.extend_recipes("snr_1", "random")


def test_the_largest_rate_winning_adds_it_times_the_factor(tmp_path):
    runner = _runner(tmp_path, [("adam_1e-4", 1.0, 0.3), ("adam_1e-3", 1.0, 0.4), ("adam_3e-3", 1.0, 0.5)])
    runs = _extend(runner)
    assert [(c.label_fraction, c.repeat, r) for c, r in runs] == [(1.0, 0, "adam_3e-3_lr_0.009")]
    (ext,) = read_extensions(runner.layout.recipes_extended)
    assert (ext.parent, ext.key, ext.edge, ext.from_value, ext.value, ext.step) == ("adam_3e-3", "lr", "largest", 0.003, 0.009, 1)
    assert ext.overrides == {"lr": 0.009} and ext.fractions == (1.0,)
    # the trainer (here or in a worker handed the original preset) finds its overrides in the record
    assert runner.trainer.recipe("adam_3e-3_lr_0.009") == {"epochs": 1, "lr": 0.009}
    assert GridTrainer(_tiny(), tmp_path).recipe("adam_3e-3_lr_0.009")["lr"] == 0.009  # as a worker builds it
    assert recipe_overrides(_tiny(), runner.layout.recipes_extended)["adam_3e-3_lr_0.009"]["lr"] == 0.009
    assert runner.selection_runs("snr_1", "random")[-1] == ("adam_3e-3_lr_0.009", 1.0)
    assert runner.extend_recipes("snr_1", "random") == []  # recorded (not yet scored): not proposed twice
    # a grid stopped here resumes by training the recorded recipe's run before it chooses again
    graph = RunGraph(runner.preset, list(grid_cells(runner.preset)), lambda job: False, runner.tables.tried,
                     runner.selection_runs)
    assert graph.selection[("snr_1", "random")] == [("finetune", GridCell("snr_1", "random", 1.0, 0), "adam_3e-3_lr_0.009")]
    assert not graph.selected(("snr_1", "random"))


def test_the_smallest_rate_winning_adds_it_divided_and_a_middle_one_nothing(tmp_path):
    runner = _runner(tmp_path / "low", [("adam_1e-4", 1.0, 0.5), ("adam_1e-3", 1.0, 0.4), ("adam_3e-3", 1.0, 0.3)])
    (cell, recipe), = _extend(runner)
    (ext,) = read_extensions(runner.layout.recipes_extended)
    assert recipe == ext.recipe == "adam_1e-4_lr_3.33333e-05" and ext.edge == "smallest"
    assert ext.overrides == {"lr": 3.33333e-05}
    middle = _runner(tmp_path / "mid", [("adam_1e-4", 1.0, 0.3), ("adam_1e-3", 1.0, 0.5), ("adam_3e-3", 1.0, 0.4)])
    assert _extend(middle) == [] and not middle.layout.recipes_extended.exists()
    off = _runner(tmp_path / "off", [("adam_1e-4", 1.0, 0.3), ("adam_1e-3", 1.0, 0.4), ("adam_3e-3", 1.0, 0.5)],
                  extend_edges=None)
    assert _extend(off) == [] and not off.layout.recipes_extended.exists()  # the default: the space as declared


def test_max_steps_stops_the_extension(tmp_path):
    """Step 1 (×3) wins and is again the largest: step 2 (×9, named after the declared root) is added; with it
    winning too, max_steps 2 stops there."""
    rows = [("adam_1e-4", 1.0, 0.3), ("adam_1e-3", 1.0, 0.4), ("adam_3e-3", 1.0, 0.5)]
    runner = _runner(tmp_path, rows)
    _extend(runner)
    runner.tables.add_selection({"dataset": "snr_1", "method": "random", "recipe": "adam_3e-3_lr_0.009", "label_fraction": 1.0,
                                 "repeat": 0, "pretrain_seed": np.nan, "best_val_accuracy": 0.6, "chosen": False, "run_dir": "x"})
    ((_, second),) = _extend(runner)
    assert second == "adam_3e-3_lr_0.027"
    ext = read_extensions(runner.layout.recipes_extended)[-1]
    assert (ext.parent, ext.step, ext.value) == ("adam_3e-3_lr_0.009", 2, 0.027)
    runner.tables.add_selection({"dataset": "snr_1", "method": "random", "recipe": second, "label_fraction": 1.0,
                                 "repeat": 0, "pretrain_seed": np.nan, "best_val_accuracy": 0.7, "chosen": False, "run_dir": "x"})
    assert runner.choose_recipe("snr_1", "random") == {0.5: second, 1.0: second}
    assert runner.extend_recipes("snr_1", "random") == []  # still at the edge, but 2 steps beyond it
    one_step = [Extension("d", "m", "adam_3e-3_lr_0.009", "adam_3e-3", "lr", "largest", 0.003, 0.009, 1, (1.0,), {"lr": 0.009})]
    table = pd.DataFrame({"recipe": [*SPACE, "adam_3e-3_lr_0.009"], "label_fraction": 1.0})
    space = {**SPACE, "adam_3e-3_lr_0.009": {"lr": 0.009}}
    choice = [((1.0,), "adam_3e-3_lr_0.009", list(space))]
    assert propose(table, choice, space, {}, one_step, 3, 1, ("d", "m")) == []  # max_steps 1


def test_a_key_with_one_value_on_offer_is_not_extended():
    """lr varies (extended); encoder_lr is 1e-4 in every recipe (not a dimension of the space); a space that varies
    neither rate (layer decay only) is never extended."""
    space = {"a": {"lr": 0.001, "encoder_lr": 1e-4}, "b": {"lr": 0.003, "encoder_lr": 1e-4}}
    table = pd.DataFrame({"recipe": ["a", "b"], "label_fraction": 1.0})
    (ext,) = propose(table, [((1.0,), "b", ["a", "b"])], space, {}, [], 3, 2, ("d", "m"))
    assert (ext.recipe, ext.key, ext.overrides) == ("b_lr_0.009", "lr", {"lr": 0.009, "encoder_lr": 1e-4})
    decay = {"plain": {}, "ld": {"layer_decay": 0.7}}
    assert propose(table.assign(recipe=["plain", "ld"]), [((1.0,), "ld", list(decay))], decay, {"lr": 0.001}, [], 3, 2,
                   ("d", "m")) == []


def test_per_fraction_choice_extends_only_where_the_winner_is_at_the_edge(tmp_path):
    rows = [("adam_1e-4", 0.5, 0.3), ("adam_1e-3", 0.5, 0.4), ("adam_3e-3", 0.5, 0.5),
            ("adam_1e-4", 1.0, 0.3), ("adam_1e-3", 1.0, 0.6), ("adam_3e-3", 1.0, 0.4)]
    runner = _runner(tmp_path, rows, selection_fractions=[0.5, 1.0], choose_per_fraction=True)
    runs = _extend(runner)
    assert [(c.label_fraction, r) for c, r in runs] == [(0.5, "adam_3e-3_lr_0.009")]
    # scored at 0.5 only, it competes there (and wins), not in the mean's choice for the other fractions
    runner.tables.add_selection({"dataset": "snr_1", "method": "random", "recipe": "adam_3e-3_lr_0.009", "label_fraction": 0.5,
                                 "repeat": 0, "pretrain_seed": np.nan, "best_val_accuracy": 0.9, "chosen": False, "run_dir": "x"})
    assert runner.choose_recipe("snr_1", "random") == {0.5: "adam_3e-3_lr_0.009", 1.0: "adam_1e-3"}
    assert [r for _, r in runner.extend_recipes("snr_1", "random")] == ["adam_3e-3_lr_0.027"]


@pytest.mark.parametrize("bad", [{"factor": 1, "max_steps": 2}, {"factor": 3}, {"factor": 3, "max_steps": 0},
                                 {"factor": 3, "max_steps": 1.5}, "yes"])
def test_extend_edges_is_checked(bad):
    with pytest.raises(ConfigError, match="extend_edges"):
        _tiny(extend_edges=bad)


@pytest.mark.slow
def test_a_grid_extends_at_the_edge_records_it_and_resumes(tmp_path):
    """lr 1e-6 vs 1e-5 for one epoch: the larger wins, the grid trains 3e-5 (max_steps 1) on validation, the cells use
    the final choice, the report says so, and a second run trains nothing."""
    preset = _tiny(recipes={"small_lr": {"lr": 1e-5}, "tiny_lr": {"lr": 1e-6}}, extend_edges={"factor": 3, "max_steps": 1})
    results = run_grid(preset, tmp_path, report=True, progress=False)  # ties go to the first declared: the largest
    selection = pd.read_csv(tmp_path / "selection.csv")
    record = json.loads((tmp_path / "recipes_extended.json").read_text())["extensions"]
    assert [(e["parent"], e["recipe"], e["value"], e["fractions"]) for e in record] == [("small_lr", "small_lr_lr_3e-05", 3e-05, [1.0])]
    assert list(selection["recipe"]) == ["small_lr", "tiny_lr", "small_lr_lr_3e-05"]
    order = list(selection["recipe"])
    best = max(order, key=lambda r: (round(selection.set_index("recipe").loc[r, "best_val_accuracy"], 9), -order.index(r)))
    chosen = selection[selection["chosen"].astype(bool)]
    assert list(chosen["recipe"]) == [best] and set(results["recipe"]) == {best} and len(results) == 2
    assert results.query("label_fraction == 1.0")["run_dir"].iloc[0] == chosen["run_dir"].iloc[0]  # reused as the cell
    ckpt = next((tmp_path / "cells/snr_1/random/small_lr_lr_3e-05/f100_r0/models").glob("finetune_checkpoint_epoch=*.pt"))
    groups = torch.load(ckpt, map_location="cpu", weights_only=False)["optimizer"]["param_groups"]
    assert {g["initial_lr"] for g in groups} == {3e-05}  # trained with the added recipe's overrides
    table = (tmp_path / "table.md").read_text()
    assert "**Extended on validation**" in table and "| 1e-05 → 3e-05 | `small_lr_lr_3e-05` | 1 | 100 |" in table
    assert ("largest: extension stopped after max_steps" in table) == (best == "small_lr_lr_3e-05")
    timings = pd.read_csv(tmp_path / "timings.csv")
    assert (timings["phase"] == "finetune").sum() == 4  # 3 selection runs + the 50 % cell
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("cells/**/models/*.pt")}
    again = run_grid(preset, tmp_path, report=False, progress=False)
    assert len(again) == len(results) and len(pd.read_csv(tmp_path / "timings.csv")) == len(timings)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("cells/**/models/*.pt")} == stamps


def test_the_report_says_what_was_extended_and_where_it_stopped(tmp_path):
    """Random init went 3e-3 → 9e-3 and still chose the largest (stopped after max_steps); MoCo's extension lost."""
    from dataclasses import asdict

    from cryomonai.experiment import write_table

    exts = [Extension("d", "random", "adam_3e-3_lr_0.009", "adam_3e-3", "lr", "largest", 0.003, 0.009, 1, (1.0,), {"lr": 0.009}),
            Extension("d", "moco", "adam_1e-4_lr_3.33333e-05", "adam_1e-4", "lr", "smallest", 1e-4, 3.33333e-05, 1, (1.0,),
                      {"lr": 3.33333e-05})]
    extended = pd.DataFrame([asdict(e) for e in exts])
    recipes = {**SPACE, **{e.recipe: e.overrides for e in exts}}
    df = pd.DataFrame({"dataset": "d", "method": ["random"] * 2 + ["moco"] * 2, "label_fraction": 1.0, "repeat": [0, 1] * 2,
                       "recipe": ["adam_3e-3_lr_0.009"] * 2 + ["adam_1e-4"] * 2, "test_accuracy": [0.3, 0.32, 0.5, 0.52]})
    text = write_table(df, tmp_path / "table.md", recipes=recipes, extended=extended).read_text()
    assert "| d | Random init | `adam_3e-3` | `lr` | largest | 0.003 → 0.009 | `adam_3e-3_lr_0.009` | 1 | 100 |" in text
    assert "| d | Random init | `adam_3e-3_lr_0.009` | `lr` | 0.009 | largest: extension stopped after max_steps |" in text
    # MoCo chose from its own space (1e-4 is inside it now); the other arm's 9e-3 is not on MoCo's offer
    assert "| d | MoCo | `adam_1e-4` | `lr` | 0.0001 |" not in text
