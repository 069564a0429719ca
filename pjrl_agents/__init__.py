"""pjrl_agents: shared scanned agents, the runner and the command line."""
from pjrl_agents.run import xla_cpu

xla_cpu.use_cpu_flags()  # before anything touches a device (see xla_cpu.CPU_FLAGS)

from pjrl_agents.trained.policy import load_policy  # noqa: E402

__all__ = ["load_policy"]
