"""Small tool servers that ship with agentic (the demo MCP server)."""
