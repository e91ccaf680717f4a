"""What goes to the operating room with a plan: a printable patient-specific needle template
(freehand plans) or the hole map of a coplanar template (docs/operating-room.md)."""

from .hole_map import HoleEntry, hole_map, hole_map_document, hole_map_rows
from .template_checks import check_template
from .template_mesh import TemplateMesh, build_template
from .template_options import TemplateOptions, template_options

__all__ = [
    "HoleEntry",
    "TemplateMesh",
    "TemplateOptions",
    "build_template",
    "check_template",
    "hole_map",
    "hole_map_document",
    "hole_map_rows",
    "template_options",
]
