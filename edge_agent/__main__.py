"""``python -m edge_agent`` is ``cityops-agent``."""

from edge_agent.cli import main

raise SystemExit(main())
