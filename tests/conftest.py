"""Suite-wide settings live in the root conftest.py (shared with the nbval run over solutions/)."""
