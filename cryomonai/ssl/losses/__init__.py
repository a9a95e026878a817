"""The losses of the self-supervised methods, one per file (each cites its paper, states its shapes).

* :mod:`~cryomonai.ssl.losses.info_nce` — :func:`info_nce` (MoCo);
* :mod:`~cryomonai.ssl.losses.nt_xent` — :func:`nt_xent` (SimCLR);
* :mod:`~cryomonai.ssl.losses.swav` — :func:`sinkhorn` codes and :func:`swapped_prediction` (SwAV);
* :mod:`~cryomonai.ssl.losses.vicreg` — :func:`vicreg_terms` (VICReg).

All work in one process and see the global batch under ``torch.distributed``
(:mod:`cryomonai.ssl.functional`).
"""

from cryomonai.ssl.losses.info_nce import info_nce
from cryomonai.ssl.losses.nt_xent import nt_xent
from cryomonai.ssl.losses.swav import sinkhorn, swapped_prediction
from cryomonai.ssl.losses.vicreg import vicreg_terms

__all__ = ["info_nce", "nt_xent", "sinkhorn", "swapped_prediction", "vicreg_terms"]
