"""Custom CUDA kernels (CuPy RawModule), each with a pure-array reference it is tested against.

| kernel | reference |
|---|---|
| ``tg43.influence_dense_cuda`` | ``seedopt.dose.influence.reference_block`` |
| ``anneal.propose_cuda`` (one annealing step's doses) | ``anneal.propose_reference`` |
| ``anneal.accept_cuda`` (accepted chains keep their proposal) | ``anneal.accept_reference`` |
"""
