"""Data shipped with seedopt: TG-43U1 source models (``sources/``) and, later, case configs."""
