"""Agents used by the benchmark: MCP servers whose tools do (almost) nothing."""
