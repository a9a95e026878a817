import numpy as np
from pathlib import Path
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from cryomonai.io import read_particle_table
from cryomonai.evaluation.readouts import encoder_features
from cryomonai.engines.weights import weights_file
from cryomonai.pipeline import bundle_dir
root = Path("/tmp/ms"); table = read_particle_table(root / "particles.star"); cache = root / "cache" / "volumes.npy"
y = table.df["label_index"].to_numpy()
for name, ck in (("shipped", weights_file("simclr_rb3d_bn_16", bundle_dir())), ("random", "")):
    for seed in (0, 1):
        f = encoder_features(table, cache, "rb3d_bn", ck, seed=seed)
        s = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000)), f, y, cv=StratifiedKFold(5, shuffle=True, random_state=0))
        print(name, seed, round(s.mean(), 3))
