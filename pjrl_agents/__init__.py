"""pjrl_agents: shared scanned agents, the runner and the command line."""
from pjrl_agents.policy import load_policy

__all__ = ["load_policy"]
