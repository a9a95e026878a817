import time, sys, json, shutil
from cryomonai.pipeline import run_bundle
d = "/tmp/fresh/runs/grid_cpu/data/snr_inf_bin2"
extra = json.loads(sys.argv[1])
shutil.rmtree("/tmp/pbn", ignore_errors=True)
opt = {"_target_": "torch.optim.Adam", "params": "$[{'params': list(@classifier.encoder.parameters()), 'lr': @encoder_lr}, {'params': list(@classifier.head.parameters())}]", "lr": "@lr", "weight_decay": "@weight_decay"}
kw = dict(dataset_dir=d, cache_path=d + "/cache/volumes.npy", ckpt_dir="/tmp/pbn/models", output_dir="/tmp/pbn/eval", pretrained="", epochs=60, val_interval=5, label_fraction=1.0, progress=False, batch_size=16, lr=0.001, num_workers=0, augment_on_device=True, optimizer=opt)
kw.update(extra)
t0 = time.perf_counter()
wf = run_bundle('finetune', encoder='rb3d', **kw)
print("RESULT", extra, f"{time.perf_counter() - t0:.1f}s", flush=True)
