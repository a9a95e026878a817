"""The re-shipped classifier on the shipped grid's test split (read once, after validation chose it) and on the
same test boxes rendered without their target (the context control):

    .venv/bin/python docs/records/shipped_weights_v3/score.py GRID > docs/records/shipped_weights_v3/score.txt
"""
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from cryomonai.data import VolumeStackDataset
from cryomonai.engines import AutocastInferer, PrepareBatchMemoryFormat, native_bf16
from cryomonai.engines.weights import weights_file
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.pipeline import bundle_dir
from cryomonai.transforms import eval_transform

torch.set_num_threads(1)
data = Path(sys.argv[1]) / "data" / "walkthrough_snr0.05"
ckpt = torch.load(weights_file("simclr_rb3d_bn_16_classifier", bundle_dir(), "classifier"), weights_only=True)
inferer, prepare = AutocastInferer(native_bf16("cpu")), PrepareBatchMemoryFormat(torch.channels_last_3d)
for what, folder in (("test split", data), ("the same boxes without their target", data / "context")):
    table = read_particle_table(folder / "particles.star")
    net = Classifier(build_encoder("rb3d_bn"), len(table.class_names))
    net.load_state_dict(ckpt["model"])
    net.eval()
    rows = np.flatnonzero(table.df["split"].to_numpy() == "test")
    volumes = Subset(VolumeStackDataset(table, folder / "cache" / "volumes.npy", transform=eval_transform(), progress=False), rows)
    with torch.no_grad():
        pred = torch.cat([inferer(prepare(b, "cpu")[0], net).argmax(1) for b in DataLoader(volumes, batch_size=100)])
    acc = float((pred.numpy() == table.df["label_index"].to_numpy()[rows]).mean())
    print(f"{what} ({len(rows)} subtomograms): {100 * acc:.1f} %")
