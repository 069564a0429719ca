"""Networks shared by the agents: observation torsos and heads, chosen from the spaces."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen.initializers import constant


def orthogonal(scale: float = 1.0, iterations: int = 60):
    """Orthogonal initialiser (a Haar-random orthogonal matrix times `scale`) without LAPACK.

    The orthogonal polar factor of a Gaussian matrix is Haar-distributed, and the
    Newton-Schulz iteration `X <- 1.5 X - 0.5 X X^T X` converges to it using only
    matrix products. A QR-based initialiser under `vmap` calls a batched LAPACK
    kernel that can deadlock XLA's CPU thread pool on machines with few cores.
    """

    def init(key, shape, dtype=jnp.float32):
        rows, cols = int(np.prod(shape[:-1])), shape[-1]
        wide = rows < cols
        a = jax.random.normal(key, (cols, rows) if wide else (rows, cols), jnp.float32)
        x = a / jnp.linalg.norm(a)
        x = jax.lax.fori_loop(0, iterations, lambda _, x: 1.5 * x - 0.5 * x @ (x.T @ x), x)
        if wide:
            x = x.T
        return (scale * x).reshape(shape).astype(dtype)

    return init


_ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "gelu": nn.gelu, "silu": nn.silu}


def flatten_obs(obs: Any, batch_ndim: int = 1) -> jax.Array:
    """Every observation leaf flattened past its batch dims and concatenated, as float32."""
    leaves = jax.tree.leaves(obs)
    lead = leaves[0].shape[:batch_ndim]
    return jnp.concatenate([x.reshape(lead + (-1,)).astype(jnp.float32) for x in leaves], axis=-1)


class MLP(nn.Module):
    """Dense layers with orthogonal init, as PPO implementations usually start, or flax's default
    (LeCun normal, as PureJaxRL's and CleanRL's DQN start); zero biases either way."""

    hidden_sizes: Sequence[int]
    activation: str = "tanh"
    orthogonal_init: bool = True
    layer_norm: bool = False
    """LayerNorm after each dense layer, before its activation (PQN's network; SAC and TD3 critics may use it)"""

    @nn.compact
    def __call__(self, x):
        act = _ACTIVATIONS[self.activation]
        init = orthogonal(np.sqrt(2)) if self.orthogonal_init else nn.initializers.lecun_normal()
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=init, bias_init=constant(0.0))(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = act(x)
        return x


TORSOS = ("auto", "mlp", "cnn", "nature")


def choose_torso(observation_space: Any, torso: str = "auto") -> str:
    """The torso for an observation space; `torso` other than "auto" is taken as it is.

    "nature" (the Atari DQN paper's CNN) for one frame stack of 36x36 pixels or more,
    channels first or last (envpool's `(4, 84, 84)`); "cnn" (one small conv) for a
    smaller image-like `(H, W, C)` Box with H, W >= 5, as MinAtar's 10x10xC; "mlp"
    for anything else.
    """
    if torso != "auto":
        return torso
    leaves = jax.tree.leaves(observation_space, is_leaf=lambda s: hasattr(s, "shape") and hasattr(s, "dtype"))
    if len(leaves) != 1 or len(leaves[0].shape) != 3:
        return "mlp"
    shape = leaves[0].shape
    if sorted(shape)[1] >= 36:
        return "nature"
    return "cnn" if min(shape[:2]) >= 5 else "mlp"


def _patches(x, kernel_size, strides, padding: str):
    """`(N, H, W, C)` -> `(N, H', W', kh * kw * C)`: each output pixel's receptive field,
    ordered (kernel row, kernel column, channel) as a `(kh, kw, C, F)` kernel is, built
    from strided slices ("SAME" pads as XLA does: the odd pixel after)."""
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding={padding!r}: use 'SAME' or 'VALID'")
    pads, out = [], []
    for size, k, s in zip(x.shape[1:3], kernel_size, strides):
        n = -(-size // s) if padding == "SAME" else (size - k) // s + 1
        total = max((n - 1) * s + k - size, 0) if padding == "SAME" else 0
        pads.append((total // 2, total - total // 2))
        out.append(n)
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    (kh, kw), (sh, sw), (oh, ow) = kernel_size, strides, out
    return jnp.concatenate([jax.lax.slice(x, (0, i, j, 0), (x.shape[0], i + (oh - 1) * sh + 1,
                                                             j + (ow - 1) * sw + 1, x.shape[3]), (1, sh, sw, 1))
                            for i in range(kh) for j in range(kw)], axis=-1)


class PatchConv(nn.Module):
    """`nn.Conv`'s parameters and output; on CPU computed as image patches times a matrix.

    XLA's CPU backend runs convolutions slowly, their gradients most of all, and
    worse again under `vmap` over parameters (seeds, sweeps), where they become
    grouped convolutions. The patches-and-matmul form turns them into (batched)
    matrix products. Per gradient step on a 2-core CPU (`benchmarks/conv.py`):
    MinAtar's 3x3 conv on 10x10 frames about 5x faster for one seed and 13x for
    four; the Nature CNN on 84x84 frames about 30x. Other backends keep XLA's
    convolution (`impl="auto"`); "patches" or "conv" force one.
    """

    features: int
    kernel_size: tuple[int, int] = (3, 3)
    strides: tuple[int, int] = (1, 1)
    padding: str = "SAME"
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = constant(0.0)
    impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, x.shape[-1], self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        lead, x = x.shape[:-3], x.reshape((-1,) + x.shape[-3:])
        impl = self.impl if self.impl != "auto" else ("patches" if jax.default_backend() == "cpu" else "conv")
        if impl == "patches":
            y = _patches(x, self.kernel_size, self.strides, self.padding) @ kernel.reshape(-1, self.features)
        else:
            y = jax.lax.conv_general_dilated(x, kernel, self.strides, self.padding,
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y + bias
        return y.reshape(lead + y.shape[1:])


class ConvTorso(nn.Module):
    """A small CNN for MinAtar-sized images `(B, H, W, C)`: one 3x3 conv of 16 filters,
    flattened (as the MinAtar paper's network)."""

    features: int = 16
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = jax.tree.leaves(obs)[0].astype(jnp.float32)
        x = _ACTIVATIONS[self.activation](PatchConv(self.features, (3, 3), padding="SAME", name="Conv_0",
                                                    kernel_init=orthogonal(np.sqrt(2)))(x))
        return x.reshape(x.shape[:-3] + (-1,))


class NatureTorso(nn.Module):
    """The Atari CNN of Mnih et al. (2015) for `(B, C, H, W)` or `(B, H, W, C)` frame stacks:
    32 8x8/4, 64 4x4/2, 64 3x3/1 convolutions and a 512-unit dense layer, ReLU. The
    channel axis is the smaller of the first and last; uint8 pixels are scaled to [0, 1]."""

    features: int = 512

    @nn.compact
    def __call__(self, obs):
        x = jax.tree.leaves(obs)[0]
        scale = 1.0 / 255.0 if x.dtype == jnp.uint8 else 1.0
        if x.shape[-3] < x.shape[-1]:  # channels first
            x = jnp.moveaxis(x, -3, -1)
        x = x.astype(jnp.float32) * scale
        for i, (features, kernel, stride) in enumerate(((32, 8, 4), (64, 4, 2), (64, 3, 1))):
            x = nn.relu(PatchConv(features, (kernel, kernel), (stride, stride), padding="VALID", name=f"Conv_{i}",
                                  kernel_init=orthogonal(np.sqrt(2)))(x))
        x = x.reshape(x.shape[:-3] + (-1,))
        return nn.relu(nn.Dense(self.features, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))(x))


_TORSO_MODULES = {"cnn": ConvTorso, "nature": NatureTorso}


def _set_up_heads(module) -> None:
    """The actor and critic MLPs and heads (and a Gaussian's log std) of an actor-critic module, from its
    `setup`: the feed-forward and the recurrent one name them alike, so their parameters read alike."""
    module.actor_torso = MLP(module.hidden_sizes, module.activation)
    module.actor_head = nn.Dense(module.action_dim, kernel_init=orthogonal(0.01), bias_init=constant(0.0))
    module.critic_torso = MLP(module.hidden_sizes, module.activation)
    module.critic_head = nn.Dense(1, kernel_init=orthogonal(1.0), bias_init=constant(0.0))
    if module.continuous:
        module.log_std = module.param("log_std", constant(0.0), (module.action_dim,))


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs over the flattened observation, or over a shared CNN's
    features when `torso` is "cnn" or "nature" (`hidden_sizes=()` puts the heads right on them).

    Returns `(actor_out, value)`: logits `(B, A)` for discrete actions (`A` the sum of
    `nvec` for multi-discrete ones), or for continuous ones `(mean, log_std)`, each
    `(B, D)`, with a state-independent learned `log_std`; and the value `(B,)`.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    continuous: bool = False
    torso: str = "mlp"

    def setup(self):
        if self.torso in _TORSO_MODULES:
            self.conv_torso = _TORSO_MODULES[self.torso]()
        _set_up_heads(self)

    @property
    def shares_torso(self) -> bool:
        """Whether the actor and the critic read one CNN's features (else they share nothing)."""
        return self.torso in _TORSO_MODULES

    def _features(self, obs, batch_ndim: int = 1):
        return self.conv_torso(obs) if self.shares_torso else flatten_obs(obs, batch_ndim)

    def _actor(self, x):
        actor = self.actor_head(self.actor_torso(x))
        return (actor, jnp.broadcast_to(self.log_std, actor.shape)) if self.continuous else actor

    def _critic(self, x):
        return self.critic_head(self.critic_torso(x))[..., 0]

    def __call__(self, obs):
        x = self._features(obs)
        return self._actor(x), self._critic(x)

    def actor(self, obs):
        """The actor's output alone, `(B, ...)`."""
        return self._actor(self._features(obs))

    def critic(self, obs, batch_ndim: int = 1):
        """The value alone, `obs` with `batch_ndim` leading axes (the MLP torso only)."""
        return self._critic(self._features(obs, batch_ndim))


CELLS = ("gru", "lstm")


def zero_memory(cell: str, batch: tuple, size: int) -> Any:
    """A recurrent core's initial state for `batch` envs: `(B, size)` for a GRU, `(c, h)` of those for an LSTM."""
    zeros = jnp.zeros(batch + (size,), jnp.float32)
    return (zeros, zeros) if cell == "lstm" else zeros


class RecurrentActorCritic(nn.Module):
    """A feature torso (a CNN for images as in `ActorCritic`, else the flattened observation) and one dense
    layer of `memory_size`, a GRU or LSTM core of `memory_size`, then separate actor and critic MLPs.

    One step: `(memory, obs) -> (memory, actor_out, value)`, with `obs` `(B, ...)` and `memory`
    as `zero_memory` makes it; the caller zeroes memory at episode starts. Over a sequence, `embed`
    and `heads` take any leading axes, so only `core` need run step by step.
    """

    action_dim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"
    continuous: bool = False
    torso: str = "mlp"
    cell: str = "gru"
    memory_size: int = 128

    def setup(self):
        if self.torso in _TORSO_MODULES:
            self.conv_torso = _TORSO_MODULES[self.torso]()
        self.embedding = nn.Dense(self.memory_size, kernel_init=orthogonal(np.sqrt(2)), bias_init=constant(0.0))
        # the recurrent kernels get this module's orthogonal init: flax's default (QR) deadlocks vmapped on CPU
        cell = nn.OptimizedLSTMCell if self.cell == "lstm" else nn.GRUCell
        self.core_cell = cell(self.memory_size, recurrent_kernel_init=orthogonal(1.0))
        _set_up_heads(self)

    def embed(self, obs, batch_ndim: int = 1):
        """`(..., memory_size)` features of observations with `batch_ndim` leading axes."""
        lead = jax.tree.leaves(obs)[0].shape[:batch_ndim]
        if self.torso in _TORSO_MODULES:
            flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[batch_ndim:]), obs)
            x = self.conv_torso(flat)
            x = x.reshape(lead + x.shape[1:])
        else:
            x = flatten_obs(obs, batch_ndim)
        return _ACTIVATIONS[self.activation](self.embedding(x))

    def core(self, memory, x):
        """One step of the recurrent core: `(memory, x (B, memory_size)) -> (memory, y)`."""
        return self.core_cell(memory, x)

    def heads(self, y):
        """`(actor_out, value)` from the core's outputs `(..., memory_size)`."""
        actor = self.actor_head(self.actor_torso(y))
        value = self.critic_head(self.critic_torso(y))[..., 0]
        if self.continuous:
            actor = (actor, jnp.broadcast_to(self.log_std, actor.shape))
        return actor, value

    def __call__(self, memory, obs):
        memory, y = self.core(memory, self.embed(obs))
        actor, value = self.heads(y)
        return memory, actor, value


# ---------------------------------------------------------------- continuous actor-critic (SAC, TD3)


def _features(obs, action=None) -> jax.Array:
    """The flattened observation, with a flattened action `(B, ...)` after it if given."""
    x = flatten_obs(obs)
    if action is None:
        return x
    return jnp.concatenate([x, action.reshape(action.shape[0], -1).astype(jnp.float32)], -1)


class _QHead(nn.Module):
    hidden_sizes: Sequence[int]
    activation: str
    layer_norm: bool

    @nn.compact
    def __call__(self, x):
        x = MLP(self.hidden_sizes, self.activation, orthogonal_init=False, layer_norm=self.layer_norm)(x)
        return nn.Dense(1, bias_init=constant(0.0))(x)[..., 0]


class QCritics(nn.Module):
    """`num` independent Q(s, a) MLPs (an ensemble, one parameter set each, stacked on a leading axis):
    `(obs (B, ...), action (B, D)) -> (num, B)`. Flax's default init (LeCun normal), as CleanRL's and
    rejax's SAC and TD3 critics start from their framework's default."""

    num: int = 2
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, obs, action):
        ensemble = nn.vmap(_QHead, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None,
                           out_axes=0, axis_size=self.num)
        return ensemble(tuple(self.hidden_sizes), self.activation, self.layer_norm, name="critics")(
            _features(obs, action))


class GaussianActor(nn.Module):
    """A state-dependent diagonal Gaussian `(mean, log_std)`, each `(B, D)`, for a tanh-squashed policy
    (`distributions.TanhGaussian`); `log_std` is squashed smoothly into `log_std_range`."""

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"
    log_std_range: tuple[float, float] = (-5.0, 2.0)

    @nn.compact
    def __call__(self, obs):
        x = MLP(self.hidden_sizes, self.activation, orthogonal_init=False)(_features(obs))
        mean = nn.Dense(self.action_dim, bias_init=constant(0.0))(x)
        low, high = self.log_std_range
        log_std = low + 0.5 * (high - low) * (nn.tanh(nn.Dense(self.action_dim, bias_init=constant(0.0))(x)) + 1)
        return mean, log_std


class DeterministicActor(nn.Module):
    """A deterministic policy in (-1, 1)^D: `obs (B, ...) -> (B, D)` (TD3)."""

    action_dim: int
    hidden_sizes: Sequence[int] = (256, 256)
    activation: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = MLP(self.hidden_sizes, self.activation, orthogonal_init=False)(_features(obs))
        return nn.tanh(nn.Dense(self.action_dim, bias_init=constant(0.0))(x))
