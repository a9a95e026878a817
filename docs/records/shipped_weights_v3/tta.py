"""Test-time averaging over box symmetries for the shipped classifier, scored on its grid's VALIDATION split only:

    .venv/bin/python docs/records/shipped_weights_v3/tta.py GRID > docs/records/shipped_weights_v3/tta.txt

D2: the box and its 180° turns about z, y and x (torch.flip of two axes; each keeps an axis-aligned missing
wedge where it was, and chirality). flips8: D2 and the 4 mirror images (reflections keep the wedge too, not
chirality). Softmax averaged over the group. Measured to decide whether `inference` should offer it; not taken.
"""
import sys

import numpy as np
import torch
from pathlib import Path
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
table = read_particle_table(data / "particles.star")
cache = data / "cache" / "volumes.npy"
ck = torch.load(weights_file("simclr_rb3d_bn_16_classifier", bundle_dir(), "classifier"), weights_only=True)
net = Classifier(build_encoder("rb3d_bn"), len(table.class_names)); net.load_state_dict(ck["model"]); net.eval()
inf, prep = AutocastInferer(native_bf16("cpu")), PrepareBatchMemoryFormat(torch.channels_last_3d)
split = "val"
rows = np.flatnonzero(table.df["split"].to_numpy() == split)
ds = Subset(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), rows)
y = table.df["label_index"].to_numpy()[rows]
groups = {"id": [()], "D2": [(), (-2, -1), (-3, -1), (-3, -2)],
          "flips8": [(), (-1,), (-2,), (-3,), (-2, -1), (-3, -1), (-3, -2), (-3, -2, -1)]}
with torch.no_grad():
    probs = {}
    for b in DataLoader(ds, batch_size=100):
        x = prep(b, "cpu")[0]
        for name, g in groups.items():
            p = sum(torch.softmax(inf(torch.flip(x, d) if d else x, net).float(), 1) for d in g) / len(g)
            probs.setdefault(name, []).append(p)
for name, ps in probs.items():
    acc = (torch.cat(ps).argmax(1).numpy() == y).mean()
    print(f"{split} {name}: {100*acc:.1f} % ({len(y)})")
