"""A crowded-subtomogram simulator for cryo-ET (in the spirit of AITom's few-molecule simulator).

Modules (one responsibility each; import them directly, nothing heavy is imported here):

* :mod:`~cryomonai.simulate.templates` — atoms → density templates; the 13 shipped templates.
* :mod:`~cryomonai.simulate.geometry` — uniform rotations, ZYZ Euler angles, rotate/shift, packing.
* :mod:`~cryomonai.simulate.imaging` — the imaging model: band-pass, 3D CTF and missing wedge (the filters
  of :mod:`cryomonai.physics`), noise at an SNR.
* :mod:`~cryomonai.simulate.subtomogram` — one crowded, imaged, labelled subtomogram.
* :mod:`~cryomonai.simulate.dataset` — a whole dataset as MRC files + STAR/CSV particle table.
* :mod:`~cryomonai.simulate.prepare` — :func:`~cryomonai.simulate.prepare.ensure_dataset`: a bundle
  run's table, simulated on first use, and its volume cache.
* :mod:`~cryomonai.simulate.tomogram` — a whole synthetic tomogram with picks at known coordinates.
* :mod:`~cryomonai.simulate.preview` — the volumes of the per-class montage
  (drawn by :func:`cryomonai.visualize.preview.preview_montage`).
"""
