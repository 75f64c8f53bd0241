"""runner: declarative YAML workflows for multi-agent systems over MCP."""
