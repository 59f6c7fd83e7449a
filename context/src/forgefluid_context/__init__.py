"""ForgeFluid's context service: ranked, budgeted code context for AI tasks (a Moleculer node in Python)."""

__version__ = "0.1.0"
