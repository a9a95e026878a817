"""cryomonai: self-supervised classification of cryo-ET subtomograms, built on MONAI.

Importing the package is cheap: sub-packages (``cryomonai.io``, ``cryomonai.data``,
``cryomonai.simulate`` ...) are imported on demand.
"""

__version__ = "0.1.0"
