"""Setuptools shim; the metadata lives in setup.cfg.

The ``cryo_ssl`` bundle stays at ``bundles/cryo_ssl`` in a checkout (``python -m monai.bundle run …
--bundle_root bundles/cryo_ssl``). A wheel has no checkout, so ``build_py`` copies the bundle's
configs, docs and shipped weights into the built package as ``cryomonai/_bundles/cryo_ssl``, where
:func:`cryomonai.pipeline.bundle_dir` finds it (``importlib.resources``). An editable install copies
nothing: it runs from the checkout. ``MANIFEST.in`` puts the same files in the sdist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: what a wheel carries of each bundle, relative to ``bundles/<name>/`` (not ``models/*`` beyond the shipped weights)
BUNDLE_PARTS = ("configs/**/*", "docs/**/*", "models/shipped/*")


def bundle_files(bundles: Path) -> list[Path]:
    """The files of every bundle under ``bundles`` that go into the package, relative to ``bundles``."""
    if not bundles.is_dir():
        return []
    found = {f for b in bundles.iterdir() if b.is_dir() for part in BUNDLE_PARTS for f in b.glob(part) if f.is_file()}
    return sorted(f.relative_to(bundles) for f in found if "__pycache__" not in f.parts)


class BuildPyWithBundles(build_py):
    """``build_py`` that also copies ``bundles/`` into the built package as ``cryomonai/_bundles/``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # pip install -e: the checkout's bundles/ is found in place
            return
        target = Path(self.build_lib) / "cryomonai" / "_bundles"
        for rel in bundle_files(ROOT / "bundles"):
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / "bundles" / rel, target / rel)


setup(cmdclass={"build_py": BuildPyWithBundles})
