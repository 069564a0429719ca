"""Networks shared by the agents: observation torsos and heads, chosen from the spaces."""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant, orthogonal

_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}


def flatten_obs(obs: Any, batch_ndim: int = 1) -> jax.Array:
    """Every observation leaf flattened past its batch dims and concatenated, as float32."""
    leaves = jax.tree.leaves(obs)
    lead = leaves[0].shape[:batch_ndim]
    return jnp.concatenate([x.reshape(lead + (-1,)).astype(jnp.float32) for x in leaves], axis=-1)


class MLP(nn.Module):
    """Dense layers with orthogonal init, as PPO implementations usually start."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"

    @nn.compact
    def __call__(self, x):
        act = _ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = act(nn.Dense(size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        return x


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs over the flattened observation.

    Returns `(actor_out, value)`: logits `(B, A)` for discrete actions, or for
    continuous ones `(mean, log_std)`, each `(B, D)`, with a state-independent
    learned `log_std`; and the value `(B,)`.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    continuous: bool = False

    @nn.compact
    def __call__(self, obs):
        x = flatten_obs(obs)
        actor = MLP(self.hidden_sizes, self.activation, name="actor_torso")(x)
        actor = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0),
                         name="actor_head")(actor)
        critic = MLP(self.hidden_sizes, self.activation, name="critic_torso")(x)
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0), name="critic_head")(critic)
        if self.continuous:
            log_std = self.param("log_std", constant(0.0), (self.action_dim,))
            actor = (actor, jnp.broadcast_to(log_std, actor.shape))
        return actor, value[..., 0]
