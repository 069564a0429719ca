"""PPO's multi-discrete actions (per-block masks) and its CNN torso, on a tiny bandit."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.distributions import MultiCategorical
from pjrl_agents.algorithms.networks import NatureTorso, PatchConv, choose_torso
from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep


def test_multi_categorical_by_hand():
    dist = MultiCategorical((2, 3))
    logits = jnp.zeros((1, 5))
    mask = jnp.array([[True, False, False, True, True]])
    # block 1 allows only 0 (prob 1); block 2 allows 1 and 2 (prob 1/2 each)
    np.testing.assert_allclose(dist.log_prob(logits, jnp.array([[0, 1]]), mask), [np.log(0.5)], rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(logits, mask), [np.log(2)], rtol=1e-6)
    samples = dist.sample(jax.random.PRNGKey(0), jnp.zeros((512, 5)), jnp.broadcast_to(mask, (512, 5)))
    assert samples.shape == (512, 2) and (samples[:, 0] == 0).all() and (samples[:, 1] > 0).all()
    np.testing.assert_array_equal(dist.mode(jnp.array([[0.0, 1.0, 3.0, 2.0, 1.0]]), mask), [[0, 1]])


def test_torso_is_chosen_from_the_observation_space():
    assert choose_torso(spaces.Box(0, 1, (10, 10, 4))) == "cnn"  # MinAtar-shaped
    assert choose_torso(spaces.Box(0, 1, (3, 3, 2))) == "mlp"  # tic-tac-toe: too small to convolve
    assert choose_torso({"a": spaces.Box(0, 1, (10, 10, 4)), "b": spaces.Box(0, 1, (2,))}) == "mlp"
    assert choose_torso(spaces.Box(0, 1, (10, 10, 4)), "mlp") == "mlp"
    assert choose_torso(spaces.Box(0, 255, (4, 84, 84), jnp.uint8)) == "nature"  # envpool Atari, channels first
    assert choose_torso(spaces.Box(0, 255, (84, 84, 4), jnp.uint8)) == "nature"


def test_nature_torso_reads_channels_first_and_last_alike():
    frames = jax.random.randint(jax.random.PRNGKey(0), (2, 4, 84, 84), 0, 256).astype(jnp.uint8)
    net = NatureTorso()
    params = net.init(jax.random.PRNGKey(1), frames)
    # conv stack on 84x84: 20x20x32 -> 9x9x64 -> 7x7x64 -> 512, as in the Atari DQN paper
    assert params["params"]["Dense_0"]["kernel"].shape == (7 * 7 * 64, 512)
    first = net.apply(params, frames)
    last = net.apply(params, jnp.moveaxis(frames, 1, -1))
    assert first.shape == (2, 512) and float(jnp.abs(first).max()) > 0
    np.testing.assert_allclose(first, last, rtol=1e-5, atol=1e-6)
    # uint8 pixels are scaled to [0, 1]: the same frames as floats in [0, 1] give the same features
    np.testing.assert_allclose(first, net.apply(params, frames.astype(jnp.float32) / 255), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel, stride, padding, shape", [
    ((3, 3), (1, 1), "SAME", (2, 3, 10, 10, 4)),  # MinAtar's conv, two leading batch dims
    ((8, 8), (4, 4), "VALID", (2, 36, 36, 4)),  # the Nature CNN's first layer
    ((4, 4), (2, 2), "SAME", (2, 9, 9, 3)),  # uneven "SAME" padding
])
def test_patch_conv_is_nn_conv(kernel, stride, padding, shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    conv = nn.Conv(8, kernel, stride, padding=padding)
    params = conv.init(jax.random.PRNGKey(1), x)
    expected = conv.apply(params, x)
    for impl in ("patches", "conv"):
        patch_conv = PatchConv(8, kernel, stride, padding, impl=impl)
        # same parameter shapes, and from one key the same initial values
        jax.tree.map(np.testing.assert_array_equal, patch_conv.init(jax.random.PRNGKey(1), x), params)
        np.testing.assert_allclose(patch_conv.apply(params, x), expected, rtol=1e-4, atol=1e-5)
    # and the same gradients, under vmap over two parameter sets (where a grouped convolution would appear)
    stacked = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
    grad = lambda module: jax.vmap(jax.grad(lambda p: (module.apply(p, x) ** 2).sum()))(stacked)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-3),
                 grad(PatchConv(8, kernel, stride, padding, impl="patches")), grad(conv))


class ImageBandit(Env):
    """One-step episodes on a 6x6x1 image; action (1, 2) of MultiDiscrete((2, 3)) pays 1.

    Choice 2 = 0 is masked out, so the best unmasked-naive guess is not available.
    """

    observation_space = spaces.Box(0.0, 1.0, (6, 6, 1), jnp.float32)
    action_space = spaces.MultiDiscrete((2, 3))
    _mask = jnp.array([True, True, False, True, True])

    def reset(self, key):
        obs = jnp.zeros((6, 6, 1), jnp.float32)
        f = jnp.zeros((), jnp.bool_)
        return (), TimeStep(obs=obs, reward=jnp.zeros(()), terminated=f, truncated=f, final_obs=obs,
                            action_mask=self._mask, info={"illegal": f})

    def step(self, state, action, key):
        obs = jnp.zeros((6, 6, 1), jnp.float32)
        reward = ((action[0] == 1) & (action[1] == 2)).astype(jnp.float32)
        t = jnp.ones((), jnp.bool_)
        return (), TimeStep(obs=obs, reward=reward, terminated=t, truncated=~t, final_obs=obs,
                            action_mask=self._mask, info={"illegal": action[1] == 0})


@pytest.mark.slow
def test_ppo_learns_a_multi_discrete_bandit_through_the_cnn():
    env = ImageBandit().to_vec(8)
    config = ppo.PPOConfig(total_timesteps=8 * 16 * 15, num_envs=8, num_steps=16, lr=3e-3, ent_coef=0.0)
    agent = ppo.PPO(config, env)
    assert "conv_torso" in jax.eval_shape(agent.init, jax.random.PRNGKey(0)).params["params"]
    _, metrics = jax.jit(ppo.make_train(config, env))(jax.random.PRNGKey(0))
    # random legal play pays 1/4 (1/2 x 1/2); masked out actions never happen
    assert float(metrics["episode_return"][-1]) > 0.8
