"""Developer and operator tools: the demo, the CLI, build checks."""
