"""One fine-tuning step (rb3d_bn classifier, 16 subtomograms of 16³, bf16 autocast, channels-last) with 1 and 2 torch
threads, while two other single-thread training processes (the confirmation grid's workers) keep the 2 cores busy.

    .venv/bin/python docs/records/parallel_cpu/shared_cores.py > docs/records/parallel_cpu/shared_cores.txt
"""
import time

import torch

from cryomonai.networks import Classifier, build_encoder


def seconds_per_step(threads: int, steps: int = 40, warmup: int = 5) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Classifier(build_encoder("rb3d_bn"), 10).to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    x = torch.randn(16, 1, 16, 16, 16).to(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 10, (16,))
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with torch.autocast("cpu", torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps


for rep in range(2):  # alternated, twice
    for threads in (1, 2):
        print(f"round {rep + 1}, {threads} thread(s): {1000 * seconds_per_step(threads):.0f} ms/step", flush=True)
