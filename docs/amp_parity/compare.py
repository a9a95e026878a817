"""bf16 autocast vs float32 on the main job: the same `cpu` grid (same data, seeds, recipes search
space, protocol), run once in float32 (docs/grid_cpu, before bf16 became the default on CPUs with
bf16 units) and once with bf16 autocast. Per (method, label fraction): mean ± std over the 3
repeats in each precision, the difference, and Welch's t-test. Usage:

    python docs/amp_parity/compare.py FP32_RESULTS.csv BF16_RESULTS.csv > docs/amp_parity/parity.md
"""

import sys

import pandas as pd
from scipy import stats

COLUMNS = [("test_accuracy", "test accuracy"), ("linear_probe_accuracy", "linear probe"), ("knn_accuracy", "kNN")]


def main(fp32_path: str, bf16_path: str) -> None:
    a, b = pd.read_csv(fp32_path), pd.read_csv(bf16_path)
    print("| method | labels | metric | float32 (%) | bf16 autocast (%) | difference | Welch p |")
    print("|---|---:|---|---:|---:|---:|---:|")
    worst = 0.0
    for (method, frac), block in a.groupby(["method", "label_fraction"], sort=False):
        other = b[(b["method"] == method) & (b["label_fraction"] == frac)]
        for col, name in COLUMNS:
            x, y = 100 * block[col].to_numpy(), 100 * other[col].to_numpy()
            p = stats.ttest_ind(x, y, equal_var=False).pvalue
            se = (x.var(ddof=1) / len(x) + y.var(ddof=1) / len(y)) ** 0.5
            worst = max(worst, abs(y.mean() - x.mean()) / se if se > 0 else 0.0)
            print(f"| {method} | {100 * frac:g} % | {name} | {x.mean():.1f} ± {x.std(ddof=1):.1f} "
                  f"| {y.mean():.1f} ± {y.std(ddof=1):.1f} | {y.mean() - x.mean():+.1f} | {p:.2f} |")
    print(f"\nLargest |difference| / standard error of the difference: {worst:.2f}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
