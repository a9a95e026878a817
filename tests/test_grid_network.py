"""A grid whose network is not the encoder's default (``network_def#...`` in ``common`` or in a recipe): every run
that rebuilds a trained model builds the one that was trained (evaluation, readouts, Grad-CAM, embeddings)."""

import pandas as pd
import torch

from cryomonai.engines import load_checkpoint
from cryomonai.evaluation.gradcam import load_finetuned_classifier
from cryomonai.evaluation.readouts import encoder_features
from cryomonai.experiment.grid import run_grid
from cryomonai.experiment.layout import GridLayout
from cryomonai.experiment.network_keys import encoder_kwargs, network_keys
from cryomonai.io.table import read_particle_table
from test_grid import _tiny


def _channels(checkpoint) -> int:
    """The width of a saved RB3D: its first convolution's output channels."""
    state = load_checkpoint(checkpoint)["model"]
    return next(v.shape[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 5)


def test_recipes_that_change_the_network_are_evaluated_with_it(tmp_path):
    """Two recipes of other widths (8 and 16 channels; the default is 32): both train, are validated, one is chosen
    and tested; each checkpoint records the arguments it was built with and rebuilds from them alone."""
    recipes = {"w8": {"network_def#channels": 8, "lr": 0.01}, "w16": {"network_def#channels": 16, "lr": 0.01}}
    preset = _tiny(methods=["random"], label_fractions=[1.0], repeats=1, readouts=False, recipes=recipes,
                   report={"gradcam_examples": 0})
    results = run_grid(preset, tmp_path, report=True, progress=False)
    assert len(results) == 1 and results["test_accuracy"].between(0, 1).all()
    selection = pd.read_csv(tmp_path / "selection.csv")
    assert sorted(selection["recipe"]) == ["w16", "w8"] and selection["best_val_accuracy"].between(0, 1).all()
    layout = GridLayout(tmp_path)
    for recipe, width in (("w8", 8), ("w16", 16)):
        best = layout.cell_run(f"cells/snr_1/random/{recipe}/f100_r0").finetune_best
        assert load_checkpoint(best)["run_info"]["encoder_args"] == {"channels": width}
        assert _channels(best) == width
        model, classes = load_finetuned_classifier(best)  # no arguments needed: the checkpoint says
        assert model.encoder.num_features == 8 * width and len(classes) == 3


def test_a_common_network_reaches_pretraining_readouts_and_the_report(tmp_path):
    """``common: {"network_def#channels": 16}``: SSL pretraining and fine-tuning build it, the frozen-feature readouts
    (random and pretrained) and the report's embeddings and Grad-CAM rebuild it."""
    preset = _tiny(methods=["random", "moco"], label_fractions=[1.0], repeats=1, recipes={},
                   common={"batch_size": 4, "network_def#channels": 16})
    assert encoder_kwargs(preset.common) == {"channels": 16}
    results = run_grid(preset, tmp_path, report=True, progress=False)
    assert len(results) == 2 and results["linear_probe_accuracy"].between(0, 1).all()
    for name in ("gradcam.png", "embedding_before_after.png", "table.md"):
        assert (tmp_path / name).is_file(), name
    layout = GridLayout(tmp_path)
    pretrained = layout.pretrain_run("snr_1", "moco", preset.seed).pretrain
    assert load_checkpoint(pretrained)["run_info"]["encoder_args"] == {"channels": 16}
    table = read_particle_table(layout.data_dir("snr_1") / "particles.star")
    feats = encoder_features(table, str(layout.cache("snr_1")), preset.encoder, str(pretrained))  # its own width
    assert feats.shape == (len(table.df), 8 * 16) and torch.isfinite(torch.from_numpy(feats)).all()


def test_the_network_keys_of_overrides():
    overrides = {"lr": 1e-3, "network_def#channels": 64, "network_def#norm#name": "group", "classifier#dropout": 0.1,
                 "network_definition": 1}
    assert network_keys(overrides) == {"network_def#channels": 64, "network_def#norm#name": "group",
                                       "classifier#dropout": 0.1}
    assert encoder_kwargs(overrides) == {"channels": 64}
    assert network_keys({"network_def": {"_target_": "x"}}) == {"network_def": {"_target_": "x"}}
