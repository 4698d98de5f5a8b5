"""Test support shared by the unit, integration and fault suites (not shipped in the layer)."""
