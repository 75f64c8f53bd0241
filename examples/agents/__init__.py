"""Example MCP agents written with the SDK: ``text``, ``kb`` and ``math`` (module-level ``server``)."""
