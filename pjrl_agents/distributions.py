"""Action distributions as pure functions of the actor's output (and the action mask)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_MASKED = -1e9  # finite, so masked entries give p * log p = 0, never nan


class Categorical:
    """Logits `(B, A)`; masked-out actions get zero probability."""

    @staticmethod
    def _logits(logits, mask):
        return logits if mask is None else jnp.where(mask, logits, _MASKED)

    @staticmethod
    def sample(key, logits, mask=None):
        return jax.random.categorical(key, Categorical._logits(logits, mask))

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
    def sample(key, params, mask=None):
        mean, log_std = params
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)

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
