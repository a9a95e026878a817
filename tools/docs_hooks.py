"""MkDocs hook (mkdocs.yml ``hooks:``): a bracketed piece of code in a docstring is not a cross-reference.

The API pages render docstrings written for the terminal and doctest, where ``d["label"]`` or
``[(lv.path, lv.shape) for lv in levels]`` are code. mkdocs-autorefs reads ``[...][...]`` in them as
reference-style links and warns that the target is missing, which strict mode turns into a failed build.
Only targets that cannot be a Python name are dropped (quotes, spaces, commas, brackets): a real
cross-reference to a missing object (``[foo][cryomonai.io.nothing]``) still fails the build.
"""

from __future__ import annotations

import logging
import re

_NOT_A_NAME = re.compile(r"Could not find cross-reference target '(.*[\"'\s,()\[\]].*|-?[\d.:]+)'$", re.S)


class _CodeIsNotAReference(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("mkdocs.plugins.mkdocs_autorefs")
                    and _NOT_A_NAME.search(record.getMessage()))


def on_config(config):
    """On every handler of mkdocs' logger, strict mode's warning counter included (added before this runs)."""
    for handler in logging.getLogger("mkdocs").handlers:
        if not any(isinstance(f, _CodeIsNotAReference) for f in handler.filters):
            handler.addFilter(_CodeIsNotAReference())
    return config
