"""PPO: GAE and the loss by hand, config errors, sweeps in one call, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.distributions import Categorical
from pjrl_agents.algorithms.shared import permutation
from pjrl_agents.config import ConfigError
from pjrl_agents.numeric import final_returns


def test_gae_by_hand():
    gamma, lam = 0.9, 0.5
    # t0 ongoing, t1 truncated (bootstrap from V(final_obs)=10), t2 ongoing, t3 terminated
    reward = jnp.array([[1.0], [2.0], [0.0], [4.0]])
    value = jnp.array([[0.5], [1.0], [2.0], [3.0]])
    next_value = jnp.array([[1.0], [10.0], [3.0], [99.0]])
    terminated = jnp.array([[False], [False], [False], [True]])
    truncated = jnp.array([[False], [True], [False], [False]])
    adv, target = ppo.compute_gae(reward, value, next_value, terminated, truncated, gamma, lam)
    d3 = 4.0 - 3.0  # no bootstrap after termination
    d2 = 0.0 + 0.9 * 3.0 - 2.0
    d1 = 2.0 + 0.9 * 10.0 - 1.0  # truncation bootstraps, but the recursion stops
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    a3 = d3
    a2 = d2 + 0.45 * a3
    a1 = d1
    a0 = d0 + 0.45 * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(target, adv + value, rtol=1e-6)


def test_loss_by_hand_at_the_behaviour_policy():
    logits = jnp.log(jnp.array([[0.25, 0.75], [0.25, 0.75]]))
    params = {"logits": logits, "v": jnp.array([1.0, 3.0])}
    apply_fn = lambda p, obs: (p["logits"], p["v"])
    batch = ppo.Batch(obs=jnp.zeros((2, 1)), mask=jnp.ones((2, 2), bool), action=jnp.array([0, 1]),
                      log_prob=jnp.log(jnp.array([0.25, 0.75])), value=jnp.array([0.0, 3.0]),
                      advantage=jnp.array([1.0, -1.0]), target=jnp.array([2.0, 2.0]))
    loss, m = ppo.ppo_loss(params, apply_fn, Categorical, batch, clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    # ratio 1: policy loss = -mean(normalised advantages) = 0
    assert abs(float(m["policy_loss"])) < 1e-6
    # value: clipped prediction for sample 0 is 0.2 -> max((1-2)^2, (0.2-2)^2) = 3.24; sample 1: 1
    np.testing.assert_allclose(m["value_loss"], 0.5 * (3.24 + 1.0) / 2, rtol=1e-6)
    entropy = -(0.25 * np.log(0.25) + 0.75 * np.log(0.75))
    np.testing.assert_allclose(m["entropy"], entropy, rtol=1e-6)
    np.testing.assert_allclose(loss, 0.5 * m["value_loss"] - 0.01 * entropy, rtol=1e-6)


def test_masked_actions_have_zero_probability():
    logits = jnp.zeros((1000, 3))
    mask = jnp.tile(jnp.array([True, False, True]), (1000, 1))
    a = Categorical.sample(jax.random.PRNGKey(0), logits, mask)
    assert not (a == 1).any()
    np.testing.assert_allclose(Categorical.entropy(logits, mask), np.log(2), rtol=1e-6)


@pytest.mark.parametrize("change, field", [
    (dict(num_minibatches=3), "num_minibatches"),
    (dict(num_envs=0), "num_envs"),
    (dict(num_steps=-1), "num_steps"),
    (dict(total_timesteps=10), "total_timesteps"),
    (dict(activation="sigmoid"), "activation"),
])
def test_bad_config_names_the_field(change, field):
    with pytest.raises(ConfigError, match=field):
        ppo.validate(ppo.PPOConfig(**change))


def test_unknown_setting_is_an_error():
    with pytest.raises(ConfigError, match="no setting"):
        ppo.default_config(learning_rate=1.0)


def test_ppo_refuses_an_action_space_it_cannot_use():
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=4)
    env.action_space = {"move": pjrl_envs.spaces.Discrete(2), "speed": pjrl_envs.spaces.Box(0, 1, (1,))}
    with pytest.raises(ConfigError, match="cannot act"):
        ppo.PPO(ppo.PPOConfig(), env)


SMALL = ppo.PPOConfig(total_timesteps=8 * 4 * 32, num_envs=4, num_steps=32, num_minibatches=2, update_epochs=2)


def test_sweep_members_match_separate_runs():
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=SMALL.num_envs)
    train = ppo.make_train(SMALL, env)
    lrs = [1e-4, 1e-3, 1e-2]
    configs = [SMALL.replace(lr=lr) for lr in lrs]
    from pjrl_agents.config import stack_configs
    key = jax.random.PRNGKey(3)
    keys = jnp.stack([key] * 3)
    states, metrics = jax.jit(jax.vmap(train))(keys, stack_configs(configs))
    single = jax.jit(train)
    for i, cfg in enumerate(configs):
        s, m = single(key, jax.tree.map(jnp.asarray, cfg))
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-4, atol=1e-5)
        for a, b in zip(jax.tree.leaves(states.params), jax.tree.leaves(s.params)):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)
    # and the members really differ
    assert not np.allclose(metrics["loss"][0], metrics["loss"][2])


def test_critic_after_the_rollout_gives_the_per_step_numbers():
    """The MLP agent values its rollout in one pass after it; the per-step evaluation (still used for a
    shared CNN torso and memory) gives the same losses and parameters on a truncating env."""
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=SMALL.num_envs, max_steps_in_episode=20)
    split, per_step = ppo.PPO(SMALL, env), ppo.PPO(SMALL, env)
    assert split.split_critic
    per_step.split_critic = False
    from pjrl_agents.algorithms.shared import make_train
    key = jax.random.PRNGKey(5)
    (s1, m1), (s2, m2) = (jax.jit(make_train(agent))(key) for agent in (split, per_step))
    assert float(np.asarray(m1["episode_length"]).max()) > 15  # most episodes end at the limit (bootstrapped)
    np.testing.assert_allclose(m1["loss"], m2["loss"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(m1["value_loss"], m2["value_loss"], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_cartpole_learns_far_beyond_random():
    config = ppo.PPOConfig(total_timesteps=150_000)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=config.num_envs)
    _, metrics = jax.jit(jax.vmap(ppo.make_train(config, env)))(jax.random.split(jax.random.PRNGKey(0), 2))
    final = final_returns(np.asarray(metrics["episode_return"]))
    # a random policy averages about 22 steps on CartPole
    assert final.mean() > 200, final


def test_box_actions_of_any_shape_reach_the_env_in_that_shape():
    from tests.envs import CounterEnv

    class Matrix(CounterEnv):
        def __init__(self):
            super().__init__(length=4)
            self.action_space = pjrl_envs.spaces.Box(-1.0, 1.0, (2, 3))

        def step(self, state, action, key):
            assert action.shape == (2, 3)
            state, ts = super().step(state, action, key)
            return state, ts._replace(reward=-jnp.square(action - 0.5).sum())

    config = ppo.PPOConfig(total_timesteps=4 * 32 * 2, num_steps=32, num_minibatches=2)
    agent = ppo.PPO(config, Matrix().to_vec(config.num_envs))
    state, _ = jax.jit(ppo.make_train(config, Matrix().to_vec(config.num_envs)))(jax.random.PRNGKey(0))
    obs = jnp.zeros((3, 2))
    assert agent.act(state.params, obs, None).shape == (3, 2, 3)


@pytest.mark.slow
def test_continuous_actions_learn_on_pendulum():
    config = ppo.default_config("gymnax:Pendulum-v1", total_timesteps=300_000)
    env = pjrl_envs.make("gymnax:Pendulum-v1", num_envs=config.num_envs)
    _, metrics = jax.jit(ppo.make_train(config, env))(jax.random.PRNGKey(0))
    ret = np.asarray(metrics["episode_return"])
    # a random policy scores about -1200
    assert final_returns(ret[None])[0] > -900, ret[-10:]


@pytest.mark.parametrize("env_id", ["gymnax:CartPole-v1", "gymnax:Pendulum-v1"])
def test_rollout_draws_up_front_the_numbers_of_step_by_step_draws(env_id):
    """`_rollout` draws every step's action noise and env key before its loop; the actions, log-probs,
    rewards and final state equal those of scanning `_env_step` (each step drawing its own): discrete
    actions exactly, Gaussian ones to rounding (XLA may fuse mean + std * noise differently)."""
    env = pjrl_envs.make(env_id, num_envs=SMALL.num_envs)
    agent = ppo.PPO(SMALL, env)
    state = agent.init(jax.random.PRNGKey(3))
    key = jax.random.PRNGKey(4)
    up_front = jax.jit(agent._rollout)(state, key)
    step_by_step = jax.jit(lambda s, k: jax.lax.scan(agent._env_step, s, jax.random.split(k, SMALL.num_steps)))(
        state, key)
    for a, b in zip(jax.tree.leaves(up_front), jax.tree.leaves(step_by_step)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if env_id.endswith("CartPole-v1"):
        np.testing.assert_array_equal(up_front[1][0].action, step_by_step[1][0].action)
        np.testing.assert_array_equal(up_front[1][0].log_prob, step_by_step[1][0].log_prob)


@pytest.mark.parametrize("dist", ["categorical", "gaussian", "multi"])
def test_sample_is_its_noise_then_sample_from(dist):
    """`sample(key, ...)` == `sample_from(noise(key, ...), ...)`; the categorical as `jax.random.categorical`."""
    from pjrl_agents.algorithms.distributions import DiagGaussian, MultiCategorical
    key, logits = jax.random.PRNGKey(7), jax.random.normal(jax.random.PRNGKey(8), (64, 5))
    d, out = {"categorical": (Categorical, logits), "gaussian": (DiagGaussian, (logits, logits * 0.1)),
              "multi": (MultiCategorical([2, 3]), logits)}[dist]
    drawn = d.sample(key, out)
    np.testing.assert_array_equal(drawn, d.sample_from(d.noise(key, out), out))
    if dist == "categorical":
        np.testing.assert_array_equal(drawn, jax.random.categorical(key, logits))
        assert len(np.unique(np.asarray(drawn))) > 1


@pytest.mark.parametrize("n", [2, 5, 512, 1024, 2000])
def test_permutation_is_jax_random_permutation_drawn_from_one_sort(n):
    """The minibatch order: jax's permutation of the same key, bit for bit (at n = 1024 about one draw
    in eight has two keys sharing their high bits, which the pair fix orders; 2000 is jax's own)."""
    keys = jax.random.split(jax.random.PRNGKey(n), 1000)
    ours = jax.jit(jax.vmap(lambda k: permutation(k, n)))(keys)
    theirs = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)
    np.testing.assert_array_equal(ours, theirs)
