"""The README's "Your own data" section runs as written: its ``bash`` blocks, in order, in one shell, in
a folder laid out like a fresh clone (``.venv`` and ``bundles/`` of this checkout, nothing else), from
the synthetic tomogram through every input kind (MRC + RELION-3 STAR, RELION 5, OME-Zarr, copick) to
predictions and clusters that the same tools read back (the blocks' own checks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your own data"


def readme_blocks(readme: Path = REPO / "README.md", section: str = SECTION) -> list[str]:
    """The ``bash`` code blocks of one ``## `` section of the README, in order."""
    text = readme.read_text()
    start = text.index(section + "\n")
    end = text.find("\n## ", start + len(section))
    body = text[start: end if end > 0 else None]
    return re.findall(r"```bash\n(.*?)```", body, flags=re.S)


def test_the_section_has_a_block_for_every_input_kind() -> None:
    script = "\n".join(readme_blocks())
    for needed in ("simulate-tomogram", "cryomonai extract", "run inference", "tomograms.star", ".zarr",
                   "copick", "cryomonai embed", "simclr_rb3d_bn_16"):
        assert needed in script, f"the README's '{SECTION}' section has no command with {needed!r}"


@pytest.mark.timeout(900)
def test_own_data_commands_run_as_written(tmp_path: Path) -> None:
    pytest.importorskip("copick")
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    (tmp_path / "bundles").symlink_to(REPO / "bundles")
    script = "set -euo pipefail\n" + "\n".join(readme_blocks())
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"README commands failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    for out in ("runs/own/predictions/predictions.star", "runs/own/predictions_relion5/predictions.star",
                "runs/own/predictions_zarr/predictions.star", "runs/own/clusters/clusters.star"):
        assert (tmp_path / out).is_file(), out
