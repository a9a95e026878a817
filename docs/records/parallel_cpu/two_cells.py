# Made at commit 3efe7ca, before the grid refactor: GridRunner._finetune is now runner.trainer.train_finetune(cell, recipe) followed by runner.validate(cell, recipe).
import sys, os, time, shutil
from pathlib import Path
import torch
threads=int(sys.argv[1]); frac=float(sys.argv[2]); epochs=int(sys.argv[3]); repeats=[int(r) for r in sys.argv[4].split(",")]; tag=sys.argv[5]
torch.set_num_threads(threads)
from cryomonai.experiment import grid as G
from cryomonai.experiment.preset import load_preset
out=Path(f"/tmp/par/g_{tag}")
if out.exists(): shutil.rmtree(out)
out.mkdir(parents=True)
os.symlink("/work/main/runs/grid_cpu_avx2/data", out/"data")
p=load_preset("cpu"); p.finetune["epochs"]=epochs
r=G.GridRunner(p, out, progress=False)
t=time.perf_counter()
for rep in repeats:
    r._finetune(G.GridCell("snr_inf_bin2","random",frac,rep),"adam_1e-3")
print(f"{tag} threads={threads} cells={repeats} {time.perf_counter()-t:.2f}s")
