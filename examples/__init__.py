"""Example agents and scenarios for runner (importable from the project root)."""
