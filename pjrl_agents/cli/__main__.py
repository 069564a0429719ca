"""`python -m pjrl_agents.cli`: the same as `pjrl`."""
import sys

from pjrl_agents.cli import main

sys.exit(main())
