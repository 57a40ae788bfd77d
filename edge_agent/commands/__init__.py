"""The subcommands of ``cityops-agent`` (one module each; see :mod:`edge_agent.cli`)."""
