"""pjrl_agents: shared scanned agents, the runner and the command line."""
from pjrl_agents import distributed

distributed.use_cpu_flags()  # before anything touches a device (see distributed.CPU_FLAGS)

from pjrl_agents.policy import load_policy  # noqa: E402

__all__ = ["load_policy"]
