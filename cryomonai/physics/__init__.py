"""The physics of cryo-ET images as Fourier-space filters, shared by the simulator and the augmentations.

Conventions
-----------
* Volumes are ``(z, y, x)`` (MRC order); the electron beam is along **z** and the tilt axis is **y**.
* Fourier filters are returned in ``torch.fft.fftn`` layout (DC at index 0, not shifted), as real
  tensors of the volume's shape, so ``ifftn(fftn(v) * H).real`` applies them.
* Spatial frequency ``k`` is in cycles/voxel (Nyquist = 0.5) unless stated otherwise.
* Every function follows the ``device`` it is given; none imports anything above it in cryomonai.

Modules (import them directly; nothing heavy is imported here):

* :mod:`~cryomonai.physics.fourier` — the Fourier grid, ``|k|``, applying a filter, smooth
  low-pass and band-pass filters.
* :mod:`~cryomonai.physics.ctf` — the electron wavelength and the 3D contrast transfer function.
* :mod:`~cryomonai.physics.wedge` — the missing-wedge mask of a single-axis tilt series.

:mod:`cryomonai.simulate.imaging` builds the imaging model (noise at an SNR) on these;
:mod:`cryomonai.transforms` builds the wedge, low-pass and CTF augmentations on them.
"""
