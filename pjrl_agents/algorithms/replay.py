"""The replay buffer the off-policy agents share (DQN, SAC, TD3): flashbax's trajectory buffer on device,
one time axis per env, so a sequence of steps (DQN's n-step returns) is one contiguous slice."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pjrl_agents.config import ConfigError
from pjrl_envs import MissingLibraryError


def check_sizes(buffer_size: int, batch_size: int, num_envs: int, sequence_length: int = 1) -> None:
    """Raises ConfigError naming the fix where a buffer of `buffer_size` transitions over `num_envs` envs
    cannot give a batch of `batch_size` sequences of `sequence_length` steps."""
    if buffer_size < batch_size:
        raise ConfigError(f"buffer_size={buffer_size} is smaller than one batch (batch_size={batch_size}); "
                          "raise buffer_size or lower batch_size")
    if buffer_size // num_envs < sequence_length:
        per_env = buffer_size // num_envs
        raise ConfigError(f"buffer_size={buffer_size} holds {per_env} step{'s' * (per_env != 1)} per env over "
                          f"num_envs={num_envs}, too few for sequences of {sequence_length}; raise buffer_size "
                          f"to at least {sequence_length * num_envs}")


class Replay:
    """A buffer of `buffer_size` transitions over `num_envs` envs (`buffer_size // num_envs` steps each,
    the oldest overwritten first) from which `sample` draws `sample_size` sequences of `sequence_length`
    consecutive steps of one env, uniformly.

    Transitions are any pytree; the buffer's state is a pytree of arrays, so it lives in the agent's
    state and is vmapped over seeds with it.
    """

    def __init__(self, buffer_size: int, num_envs: int, sample_size: int, sequence_length: int = 1):
        try:
            import flashbax
        except ImportError:
            raise MissingLibraryError("the replay buffer needs flashbax: pip install 'flashbax==0.1.3'") from None
        self.sequence_length = sequence_length
        self.buffer = flashbax.make_trajectory_buffer(
            add_batch_size=num_envs, sample_batch_size=sample_size, sample_sequence_length=sequence_length,
            period=1, min_length_time_axis=sequence_length, max_length_time_axis=buffer_size // num_envs)

    def init(self, transition: Any) -> Any:
        """An empty buffer for transitions like `transition` (one env's step: no leading axes)."""
        return self.buffer.init(transition)

    def add(self, state: Any, rollout: Any) -> Any:
        """The buffer with a rollout added, its leaves `(T, num_envs, ...)` as `lax.scan` stacks them."""
        return self.buffer.add(state, jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rollout))

    def sample(self, state: Any, key: jax.Array, shape: tuple[int, ...] | None = None) -> Any:
        """`sample_size` sequences, leaves `(sample_size, sequence_length, ...)`, or with `shape` (whose
        product is `sample_size`) `shape + (sequence_length, ...)`; the buffer must hold a sequence."""
        seq = self.buffer.sample(state, key).experience
        if shape is None:
            return seq
        return jax.tree.map(lambda x: x.reshape(tuple(shape) + x.shape[1:]), seq)
