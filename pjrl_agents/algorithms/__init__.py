"""Algorithms and the pieces they share; nothing here imports the run machinery (`pjrl_agents.run`).

`Algorithm`, `Agent` and `register` are the contract (`contract.py`); each algorithm is one module
(`ppo`, `dqn`, `dpo`, `lpo`) publishing an `ALGORITHM` record under the `pjrl.algorithms` entry points.
"""
from pjrl_agents.algorithms.contract import (
    ENTRY_POINT_GROUP,
    EPISODE_METRICS,
    Agent,
    AgentState,
    Algorithm,
    ContractError,
    Hints,
    get,
    names,
    register,
)

__all__ = ["ENTRY_POINT_GROUP", "EPISODE_METRICS", "Agent", "AgentState", "Algorithm", "ContractError", "Hints", "get",
           "names", "register"]
