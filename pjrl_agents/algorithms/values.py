"""Action-value pieces shared by the value-based agents (DQN, PQN): the Q-network, masked maxima and
epsilon-greedy exploration over legal actions."""
from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.initializers import constant

from pjrl_agents.algorithms.networks import MLP, ConvTorso, NatureTorso, flatten_obs


class QNetwork(nn.Module):
    """An MLP over the flattened observation (or a CNN's features) with one output per action: `(B, A)`.

    Weights start as flax's default (LeCun normal), biases at zero: PureJaxRL's dqn.py network,
    and CleanRL's and SB3's DQN start from their framework's default too. (pjrl's orthogonal init
    is a Newton-Schulz loop per layer: one CartPole seed's training compiled 0.3-0.4 s slower with it.)
    `layer_norm` puts a LayerNorm after each hidden layer (PQN's network, which needs no target network).
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (120, 84)
    activation: str = "relu"
    layer_norm: bool = False
    torso: str = "mlp"
    """mlp, or cnn / nature (`networks.choose_torso`) for images, whose features the MLP then reads"""

    @nn.compact
    def __call__(self, obs):
        if self.torso == "cnn":
            x = ConvTorso()(obs)
        elif self.torso == "nature":
            x = NatureTorso()(obs)
        else:
            x = flatten_obs(obs)
        x = MLP(tuple(self.hidden_sizes), self.activation, orthogonal_init=False, layer_norm=self.layer_norm)(x)
        return nn.Dense(self.action_dim, bias_init=constant(0.0))(x)


def masked_max(q, mask):
    """max over legal actions of `q` `(N, A)` with `mask` `(N, A)` bool; returns `(N,)`."""
    return jnp.where(mask, q, -jnp.inf).max(-1)


def masked_argmax(q, mask):
    """argmax over legal actions; returns `(N,)` int32."""
    return jnp.argmax(jnp.where(mask, q, -jnp.inf), -1).astype(jnp.int32)


def linear_epsilon(start, finish, anneal_steps, timesteps):
    """Linear decay from `start` to `finish` over `anneal_steps` env steps, then flat."""
    frac = jnp.minimum(timesteps / anneal_steps, 1.0)
    return start + frac * (finish - start)


def epsilon_greedy(key, q, mask, eps):
    """With probability `eps` a uniformly random legal action, else the greedy legal one. `(N,)`.

    One draw of `A + 1` uniforms a row: the first chooses whether to explore, the largest of the
    others over the legal actions which action (each legal action equally likely).
    """
    u = jax.random.uniform(key, q.shape[:-1] + (q.shape[-1] + 1,))
    random_action = masked_argmax(u[..., 1:], mask)
    return jnp.where(u[..., 0] < eps, random_action, masked_argmax(q, mask))
