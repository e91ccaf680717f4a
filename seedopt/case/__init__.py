"""Cases: the dose grid and structure masks by role (phantoms from YAML, HDF5 case files)."""

from .case import Case
from .config import CaseSpec, load_case_spec
from .grid import Grid
from .structures import expand, skin_shell

__all__ = ["Case", "CaseSpec", "Grid", "expand", "load_case_spec", "skin_shell"]
