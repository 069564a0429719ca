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


TORSOS = ("auto", "mlp", "cnn")


def choose_torso(observation_space: Any, torso: str = "auto") -> str:
    """"cnn" for an image-like observation (one `(H, W, C)` Box with H, W >= 5, as MinAtar's
    10x10xC), "mlp" for anything else; `torso` other than "auto" is taken as it is."""
    if torso != "auto":
        return torso
    leaves = jax.tree.leaves(observation_space, is_leaf=lambda s: hasattr(s, "shape") and hasattr(s, "dtype"))
    if len(leaves) == 1 and len(leaves[0].shape) == 3 and min(leaves[0].shape[:2]) >= 5:
        return "cnn"
    return "mlp"


class ConvTorso(nn.Module):
    """A small CNN for MinAtar-sized images `(B, H, W, C)`: one 3x3 conv of 16 filters,
    flattened (as the MinAtar paper's network)."""

    features: int = 16
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = jax.tree.leaves(obs)[0].astype(jnp.float32)
        x = _ACTIVATIONS[self.activation](nn.Conv(self.features, (3, 3), padding="SAME",
                                                  kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))
        return x.reshape(x.shape[:-3] + (-1,))


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs over the flattened observation (or over a shared CNN's
    features when `torso="cnn"`).

    Returns `(actor_out, value)`: logits `(B, A)` for discrete actions (`A` the sum of
    `nvec` for multi-discrete ones), or for continuous ones `(mean, log_std)`, each
    `(B, D)`, with a state-independent learned `log_std`; and the value `(B,)`.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    continuous: bool = False
    torso: str = "mlp"

    @nn.compact
    def __call__(self, obs):
        x = ConvTorso(name="conv_torso")(obs) if self.torso == "cnn" else flatten_obs(obs)
        actor = MLP(self.hidden_sizes, self.activation, name="actor_torso")(x)
        actor = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0),
                         name="actor_head")(actor)
        critic = MLP(self.hidden_sizes, self.activation, name="critic_torso")(x)
        value = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0), name="critic_head")(critic)
        if self.continuous:
            log_std = self.param("log_std", constant(0.0), (self.action_dim,))
            actor = (actor, jnp.broadcast_to(log_std, actor.shape))
        return actor, value[..., 0]
