"""seedopt: inverse planning for permanent I-125 seed brachytherapy.

Pipeline: source model (``sources``) -> TG-43 dose engine (``dose``, CUDA in ``kernels``)
-> optimizers (``optimizer``) -> plan and exporters.
"""

from .backend import Backend, select_backend
from .errors import SeedoptError
from .sources import Source, SourceModel, get_model, known_models

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "SeedoptError",
    "Source",
    "SourceModel",
    "get_model",
    "known_models",
    "select_backend",
]
