"""Action distributions as pure functions of the actor's output (and the action mask)."""
from __future__ import annotations

import math
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

_MASKED = -1e9  # finite, so masked entries give p * log p = 0, never nan


class Distribution(Protocol):
    """What an agent calls of its action distribution: `Categorical` and `DiagGaussian` (the classes, whose
    methods are static) and a `MultiCategorical(nvec)` instance each fit it."""

    def noise(self, key: Any, logits: Any) -> Any: ...

    def sample_from(self, noise: Any, logits: Any, mask: Any = None) -> Any: ...

    def sample(self, key: Any, logits: Any, mask: Any = None) -> Any: ...

    def log_prob(self, logits: Any, action: Any, mask: Any = None) -> Any: ...

    def entropy(self, logits: Any, mask: Any = None) -> Any: ...

    def mode(self, logits: Any, mask: Any = None) -> Any: ...


class Categorical:
    """Logits `(B, A)`; masked-out actions get zero probability."""

    @staticmethod
    def _logits(logits, mask):
        return logits if mask is None else jnp.where(mask, logits, _MASKED)

    @staticmethod
    def noise(key, logits):
        """The randomness of one `sample` (Gumbel noise like `logits`; arrays or shape structs)."""
        return jax.random.gumbel(key, logits.shape, logits.dtype)

    @staticmethod
    def sample_from(noise, logits, mask=None):
        """The sample `noise` picks: the Gumbel-max trick, as `jax.random.categorical` draws it."""
        return jnp.argmax(noise + Categorical._logits(logits, mask), -1)

    @staticmethod
    def sample(key, logits, mask=None):
        return Categorical.sample_from(Categorical.noise(key, logits), logits, mask)

    @staticmethod
    def log_prob(logits, action, mask=None):
        logp = jax.nn.log_softmax(Categorical._logits(logits, mask))
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), -1)[..., 0]

    @staticmethod
    def entropy(logits, mask=None):
        logp = jax.nn.log_softmax(Categorical._logits(logits, mask))
        return -(jnp.exp(logp) * logp).sum(-1)

    @staticmethod
    def mode(logits, mask=None):
        return jnp.argmax(Categorical._logits(logits, mask), -1)


class DiagGaussian:
    """`(mean, log_std)`, each `(B, D)`; log-probabilities sum over action dimensions."""

    @staticmethod
    def noise(key, params):
        return jax.random.normal(key, params[0].shape)

    @staticmethod
    def sample_from(noise, params, mask=None):
        mean, log_std = params
        return mean + jnp.exp(log_std) * noise

    @staticmethod
    def sample(key, params, mask=None):
        return DiagGaussian.sample_from(DiagGaussian.noise(key, params), params, mask)

    @staticmethod
    def log_prob(params, action, mask=None):
        mean, log_std = params
        z = (action - mean) * jnp.exp(-log_std)
        return (-0.5 * jnp.square(z) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    @staticmethod
    def entropy(params, mask=None):
        _, log_std = params
        return (log_std + 0.5 * (1.0 + math.log(2 * math.pi))).sum(-1)

    @staticmethod
    def mode(params, mask=None):
        return params[0]


class MultiCategorical:
    """Independent categoricals, one per entry of a `MultiDiscrete(nvec)` action.

    Logits `(B, sum(nvec))` and masks `(B, sum(nvec))` hold one block per entry;
    actions are `(B, len(nvec))`; log-probabilities and entropies sum over entries.
    """

    def __init__(self, nvec):
        self.nvec = tuple(int(n) for n in nvec)
        self._splits = [int(s) for s in np.cumsum(self.nvec)[:-1]]

    def _blocks(self, logits, mask):
        blocks = jnp.split(logits, self._splits, axis=-1)
        masks = [None] * len(blocks) if mask is None else jnp.split(mask, self._splits, axis=-1)
        return list(zip(blocks, masks))

    def noise(self, key, logits):
        keys = jax.random.split(key, len(self.nvec))
        return [Categorical.noise(k, jax.ShapeDtypeStruct(logits.shape[:-1] + (n,), logits.dtype))
                for k, n in zip(keys, self.nvec)]

    def sample_from(self, noise, logits, mask=None):
        return jnp.stack([Categorical.sample_from(g, block, m)
                          for g, (block, m) in zip(noise, self._blocks(logits, mask))], -1)

    def sample(self, key, logits, mask=None):
        return self.sample_from(self.noise(key, logits), logits, mask)

    def log_prob(self, logits, action, mask=None):
        return sum(Categorical.log_prob(block, action[..., i], m)
                   for i, (block, m) in enumerate(self._blocks(logits, mask)))

    def entropy(self, logits, mask=None):
        return sum(Categorical.entropy(block, m) for block, m in self._blocks(logits, mask))

    def mode(self, logits, mask=None):
        return jnp.stack([Categorical.mode(block, m) for block, m in self._blocks(logits, mask)], -1)


class TanhGaussian:
    """`(mean, log_std)`, each `(B, D)`, of a Gaussian whose samples `u` are squashed to `tanh(u)` in
    (-1, 1)^D (SAC's policy). Log-probabilities are of the squashed action: the Gaussian's, less
    `sum log(1 - tanh(u)^2)`, computed as `2 (log 2 - u - softplus(-2u))`, which stays finite where
    `tanh(u)` rounds to 1."""

    @staticmethod
    def sample_and_log_prob(key, params):
        """`(action (B, D), log_prob (B,))`, differentiable in `params` (the reparameterisation trick)."""
        mean, log_std = params
        u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
        return jnp.tanh(u), TanhGaussian.log_prob_of_presquash(params, u)

    @staticmethod
    def log_prob_of_presquash(params, u):
        """The log-probability of the action `tanh(u)`, from the Gaussian sample `u` itself."""
        correction = 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))
        return DiagGaussian.log_prob(params, u) - correction.sum(-1)

    @staticmethod
    def mode(params, mask=None):
        return jnp.tanh(params[0])
