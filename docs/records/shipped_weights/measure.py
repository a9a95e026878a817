import math, sys, numpy as np, torch
from pathlib import Path
from torch.utils.data import DataLoader
from cryomonai.io import read_particle_table
from cryomonai.simulate.prepare import ensure_dataset
from cryomonai.evaluation.readouts import encoder_features, frozen_readouts
from cryomonai.engines.weights import weights_file
from cryomonai.pipeline import bundle_dir
from cryomonai.data import VolumeStackDataset
from cryomonai.transforms import eval_transform
from cryomonai.networks import Classifier, build_encoder
root = Path(sys.argv[1])
t = ensure_dataset(root / "particles.star", root / "cache" / "volumes.npy", progress=False, n_per_class=30, snr=math.inf, box=16,
                   binning=2, max_shift=2.0, n_neighbours=4, seed=11, workers=0, neighbour_gap=[0, 2], neighbour_contact="target")
table, cache = read_particle_table(t), root / "cache" / "volumes.npy"
train = np.flatnonzero(table.df["split"].to_numpy() == "train")
ps = frozen_readouts(encoder_features(table, cache, "rb3d_bn", weights_file("simclr_rb3d_bn_16", bundle_dir())), table, train)
pr = frozen_readouts(encoder_features(table, cache, "rb3d_bn", ""), table, train)
ck = torch.load(weights_file("simclr_rb3d_bn_16_classifier", bundle_dir()), weights_only=True)
net = Classifier(build_encoder("rb3d_bn"), 10); net.load_state_dict(ck["model"]); net.eval()
with torch.no_grad():
    pred = torch.cat([net(b["image"].as_tensor()).argmax(1) for b in DataLoader(VolumeStackDataset(table, cache, transform=eval_transform(), progress=False), batch_size=64)])
acc = float((pred.numpy() == table.df["label_index"].to_numpy()).mean())
print(f"probe shipped {ps[0]:.3f} (knn {ps[1]:.3f}); probe random {pr[0]:.3f} (knn {pr[1]:.3f}); classifier {acc:.3f} on {len(table.df)}; test split n={int((table.df.split=='test').sum())}")
