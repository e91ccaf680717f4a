"""Custom CUDA kernels (CuPy RawModule), each with a pure-array reference it is tested against.

* ``tg43.influence_dense_cuda``: reference ``seedopt.dose.influence.reference_block``.
* ``anneal.FusedStep``, one annealing step of every chain in the seven kernels of
  ``anneal_fused.cu``: reference the pure-array step of ``optimizer.anneal.anneal_chains``
  (``anneal.move_reference``, ``anneal.propose_reference``,
  ``optimizer.objective.terms_from_doses``).
"""
