"""pjrl_agents: PPO (and more) as one jitted `lax.scan`, on any pjrl_envs VecEnv."""
