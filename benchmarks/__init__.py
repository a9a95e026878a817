"""Benchmarks of cryomonai (not part of the installed package): run from the repository root.

* :mod:`benchmarks.bench_throughput` — pretraining throughput, the bundle against a bare PyTorch loop
  (``python -m benchmarks.bench_throughput --out X.json [--device cuda]``);
* :mod:`benchmarks.bench_finetune` — where a fine-tuning cell's time goes (``docs/bench_finetune_cpu.json``);
* :mod:`benchmarks.bench_views_placement` — views made in the data loader or in the training step
  (``docs/bench_views_placement.json``);
* :mod:`benchmarks.bench_machine` — peak FLOP/s and a description of the machine (MFU).

Each records the machine and what it ran in its JSON; ``tests/test_bench_*.py`` run them with ``--quick``.
"""
