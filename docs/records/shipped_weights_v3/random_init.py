"""Random init trained as the shipped classifier was (the shipped grid's random arm, its recipe chosen on validation),
with the same precise-BN statistics: validation before/after, then the test split once.

    .venv/bin/python docs/records/shipped_weights_v3/random_init.py GRID RECIPE > docs/records/shipped_weights_v3/random_init.txt
"""
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cryomonai.data import VolumeStackDataset
from cryomonai.engines import AutocastInferer, PreciseBN, PrepareBatchMemoryFormat, native_bf16
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.transforms import eval_transform

torch.set_num_threads(1)
grid, recipe = Path(sys.argv[1]), sys.argv[2]
data = grid / "data" / "walkthrough_snr0.05"
table = read_particle_table(data / "particles.star")
cache = data / "cache" / "volumes.npy"
state = torch.load(grid / "cells" / "walkthrough_snr0.05" / "random" / recipe / "f100_r0" / "models" / "finetune_best.pt",
                   weights_only=False)["model"]
net = Classifier(build_encoder("rb3d_bn"), len(table.class_names))
net.load_state_dict(state)
net.eval()
inferer, prepare = AutocastInferer(native_bf16("cpu")), PrepareBatchMemoryFormat(torch.channels_last_3d)


def accuracy(split: str) -> float:
    rows = np.flatnonzero(table.df["split"].to_numpy() == split)
    volumes = Subset(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), rows)
    with torch.no_grad():
        pred = torch.cat([inferer(prepare(b, "cpu")[0], net).argmax(1) for b in DataLoader(volumes, batch_size=100)])
    return float((pred.numpy() == table.df["label_index"].to_numpy()[rows]).mean())


before = accuracy("val")
train = VolumeStackDataset(table, cache, split="train", progress=False)
PreciseBN(net, table, Subset(train, list(range(len(train)))), cache, prepare_batch=prepare, inferer=inferer,
          batch_size=16).recompute()
print(f"random init, {recipe}: validation {100 * before:.1f} % as trained, {100 * accuracy('val'):.1f} % precise BN; "
      f"test (precise BN) {100 * accuracy('test'):.1f} %")
