"""Scheduling overhead of `--executor slurm` per job, measured side by side with the local grid in one run.

Needs a SLURM (CI's one-node cluster: `bash .ci/slurm/cluster.sh up`). Runs one tiny grid three ways
(serial in this process, 1 thread; local pool of 2 workers; SLURM, one 1-CPU job per run) and
submits 5 empty submitit jobs (SLURM's own round trip, without our imports). Writes overhead.md
next to itself. Usage: python docs/records/slurm/overhead.py [work folder]
"""

import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import submitit
import torch

from cryomonai.experiment.executors import job_overhead
from cryomonai.experiment.grid import GridPreset, run_grid

HERE = Path(__file__).resolve().parent


def tiny(**kw) -> GridPreset:
    spec = dict(name="tiny", datasets=[{"name": "snr_1", "snr": 1.0, "n_per_class": 8, "box": 8, "binning": 2,
                                        "classes": ["1bxn", "1qvr", "3cf3"], "max_shift": 1.0, "n_neighbours": 1,
                                        "workers": 0}],
                methods=["random", "moco"], label_fractions=[0.5, 1.0], repeats=1, seed=3,
                common={"batch_size": 4}, pretrain={"epochs": 40, "save_interval": 10}, finetune={"epochs": 5})
    spec.update(kw)
    return GridPreset(**spec)


def empty_jobs(folder: Path, n: int = 5) -> list[float]:
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm")
    ex.update_parameters(timeout_min=5, cpus_per_task=1)
    times = []
    for _ in range(n):
        t0 = time.time()
        ex.submit(time.time).result()
        times.append(time.time() - t0)
    return times


def main(work: Path) -> None:
    torch.set_num_threads(1)
    walls = {}
    for name, folder, preset in [("serial (1 thread)", "serial", tiny()),
                                 ("local pool, 2 workers", "local", tiny(workers=2)),
                                 ("slurm, 1-CPU jobs", "slurm", tiny(executor={"kind": "slurm", "poll_s": 1.0}))]:
        t0 = time.time()
        results = run_grid(preset, work / folder, report=False, progress=False)
        walls[name] = (time.time() - t0, results)
    jobs = job_overhead(work / "slurm" / "jobs.csv")
    empty = empty_jobs(work / "empty")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith("Model name"))
    flags = cpu.split("Flags:", 1)[1]
    isa = ", ".join(f for f in ("avx512f", "avx512_bf16", "amx_tile") if f in flags) or "AVX2 only"
    same = walls["serial (1 thread)"][1]["test_accuracy"].equals(walls["slurm, 1-CPU jobs"][1]["test_accuracy"])
    lines = [
        "# Scheduling overhead of `--executor slurm` (measured)", "",
        f"Machine: {model} ({isa}), {torch.get_num_threads()} thread per run, Python {platform.python_version()}, "
        f"torch {torch.__version__}, submitit {submitit.__version__}, Debian slurm-wlm "
        f"{subprocess.run(['sinfo', '-V'], capture_output=True, text=True).stdout.split()[-1]} (one node, 2 CPUs).",
        "Command: `python docs/records/slurm/overhead.py` (this folder). A tiny grid: 3 classes × 8, box 8, "
        "random + MoCo (40 pretraining epochs), 50/100 % labels, 1 repeat, 5 fine-tuning epochs: 5 training runs.", "",
        "| how the runs were trained | grid wall time (s) |", "|---|---|",
        *[f"| {k} | {v[0]:.1f} |" for k, v in walls.items()], "",
        f"SLURM results identical to the serial grid's: {same}.", "",
        "Per SLURM job (`jobs.csv`): submit → the run starts inside the job (queue, job start, Python + torch + "
        "MONAI imports, unpickling); the run itself; the run ends → the driver has the result.", "",
        "| job | run | submit → start (s) | run (s) | end → collected (s) |", "|---|---|---|---|---|",
        *[f"| {r.job_id} | {r.run[:80]} | {r.queued_s:.1f} | {r.run_s:.1f} | {r.collect_s:.2f} |" for r in jobs.itertuples()], "",
        f"Median: submit → start {jobs['queued_s'].median():.1f} s, run {jobs['run_s'].median():.1f} s, "
        f"end → collected {jobs['collect_s'].median():.2f} s.", "",
        f"An empty submitit job (no imports of ours), submit → result, 5 times: "
        f"{', '.join(f'{t:.1f}' for t in empty)} s (median {statistics.median(empty):.1f} s): SLURM's own share.", "",
        "So on this machine a job costs its run plus the time to start Python with torch and MONAI; "
        "the grid's runs on a GPU cluster last minutes to hours, against seconds of overhead.",
    ]
    (HERE / "overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()))
