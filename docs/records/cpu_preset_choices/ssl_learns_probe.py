import time, numpy as np, torch, sys
from cryomonai.simulate.templates import load_templates
from cryomonai.simulate.geometry import random_rotations, rotate_shift
from cryomonai.data.extract import fourier_resize
from cryomonai.networks import RB3D
from cryomonai.ssl import build_method
from cryomonai.transforms import cryo3d_views
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
torch.set_num_threads(1)
names = ["1bxn", "1qvr", "1u6g", "3cf3"]  # 240-260 kDa-ish
t = load_templates(names)
temps = torch.stack([torch.from_numpy(np.asarray(fourier_resize(t[n].astype(np.float32), (12,12,12)), dtype=np.float32)) for n in names])
def make(seed, n_per):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(names)), n_per)
    rots = random_rotations(rng, len(labels))
    vols = rotate_shift(temps[labels], rots)
    g = torch.Generator().manual_seed(seed)
    vols = vols + 0.3 * vols.std() * torch.randn(vols.shape, generator=g)
    return vols[:, None].float(), labels
x_tr, _ = make(0, 32)
x_te, y_te = make(1, 25)
def feats(enc):
    enc.eval()
    with torch.no_grad():
        x = (x_te - x_te.mean((2,3,4), keepdim=True)) / x_te.std((2,3,4), keepdim=True)
        return enc(x).numpy()
def probe(f):
    f = (f - f.mean(0)) / (f.std(0) + 1e-6)
    return cross_val_score(LogisticRegression(C=0.1, max_iter=2000), f, y_te, cv=5).mean()
TINY = {"moco": {"queue_size": 32, "momentum": 0.9}, "swav": {"n_prototypes": 8, "freeze_prototypes_steps": 0, "queue_start_step": 10**9}, "vicreg": {"expander_dims": (128,128)}}
views = cryo3d_views(rotation="so3", tilt_range=None, crop_prob=0, lowpass_prob=0, ctf_prob=0, noise_prob=0).set_random_state(0)
for name in sys.argv[1:]:
    for seed in (0, 1):
        torch.manual_seed(seed)
        m = build_method(name, RB3D(), **TINY.get(name, {}))
        r = probe(feats(m.encoder)); m.train()
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        t0 = time.time(); g = np.random.default_rng(seed)
        for step in range(int(sys.argv[0] and 120)):
            idx = g.choice(len(x_tr), 16, replace=False)
            vs = [views({"image": x_tr[i]}) for i in idx]
            v = [torch.stack([d[f"view_{k}"] for d in vs]) for k in range(2)]
            out = m.training_step(v); opt.zero_grad(); out["loss"].backward(); opt.step(); m.on_train_step_end(step, 120)
        a = probe(feats(m.encoder))
        print(name, seed, f"random {r:.3f} trained {a:.3f} loss {out['loss'].item():.3f} {time.time()-t0:.1f}s", flush=True)
