"""Accuracy of the shipped classifier against crowding: the same simulator, seed and settings as the
model card's unseen-data check (10 classes × 20, SNR ∞, 32³ binned 2× to 16³ at 20 Å, target within
±2 voxels), with 0-4 neighbouring particles around the target (training data: always 4).

    OMP_NUM_THREADS=1 .venv/bin/python docs/records/shipped_weights/crowding.py /tmp/crowding > docs/records/shipped_weights/crowding.txt
"""
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cryomonai.data import VolumeStackDataset
from cryomonai.engines.weights import weights_file
from cryomonai.io import read_particle_table
from cryomonai.networks import Classifier, build_encoder
from cryomonai.pipeline import bundle_dir
from cryomonai.simulate.prepare import ensure_dataset
from cryomonai.transforms import eval_transform

root = Path(sys.argv[1])
ckpt = torch.load(weights_file("simclr_rb3d_bn_16_classifier", bundle_dir(), "classifier"), weights_only=True)
net = Classifier(build_encoder("rb3d_bn"), 10)
net.load_state_dict(ckpt["model"])
net.eval()
print("| neighbours | subtomograms | accuracy (%) |\n|---:|---:|---:|")
for n in range(5):
    folder = root / f"nb{n}"
    table = read_particle_table(ensure_dataset(folder / "particles.star", folder / "cache" / "volumes.npy", progress=False,
                                               n_per_class=20, snr=math.inf, box=16, binning=2, max_shift=2.0,
                                               n_neighbours=n, seed=11, workers=0, neighbour_gap=[0, 2], neighbour_contact="target"))
    loader = DataLoader(VolumeStackDataset(table, folder / "cache" / "volumes.npy", transform=eval_transform(), progress=False),
                        batch_size=64)
    with torch.no_grad():
        pred = torch.cat([net(b["image"].as_tensor()).argmax(1) for b in loader])
    accuracy = float((pred.numpy() == table.df["label_index"].to_numpy()).mean())
    print(f"| {n} | {len(table.df)} | {100 * accuracy:.1f} |", flush=True)
