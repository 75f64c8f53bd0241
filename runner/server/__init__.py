"""``runner serve``: the orchestration tools over MCP (a face over ``runner.service``).

``app``        the MCPServer, HTTP options (TLS, DNS-rebinding), serving
``auth``       bearer tokens (operator, agents) and who is calling
``toolbox``    the one path every tool call takes: identity, policy, audit, answer
``tools``      agent, workflow and run tools; ``tools_more``: coordination, anti-jam,
               projects, audit
"""
