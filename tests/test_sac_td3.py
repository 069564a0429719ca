"""SAC and TD3: the squashed Gaussian and the shared off-policy loop by hand, truncation, the contract,
bad settings; learning on Pendulum in the slow tier."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents import cli
from pjrl_agents.algorithms import contract, sac, td3
from pjrl_agents.algorithms.distributions import TanhGaussian
from pjrl_agents.algorithms.offpolicy import Transition
from pjrl_agents.config import ConfigError, stack_configs
from pjrl_agents.run.evaluate import greedy_returns
from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep

KEY = jax.random.key(0)
MODULES = {"sac": sac, "td3": td3}


def small(module, **settings):
    """A config of a few updates that compiles quickly."""
    base = dict(total_timesteps=256, num_envs=4, num_steps=4, buffer_size=512, batch_size=32, learning_starts=64,
                hidden_sizes=(16,))
    if module is td3:
        base["critic_hidden_sizes"] = (16,)
    return module.default_config(None, **{**base, **settings})


# ---------------------------------------------------------------- the squashed Gaussian by hand


def test_tanh_gaussian_log_prob_by_hand():
    # mean 0.3, std e^-0.5, u = 0.8: the Gaussian's log density at u, less log(1 - tanh(u)^2)
    mean, log_std, u = 0.3, -0.5, 0.8
    z = (u - mean) / math.exp(log_std)
    by_hand = -0.5 * z * z - log_std - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)
    params = (jnp.full((1, 1), mean), jnp.full((1, 1), log_std))
    ours = TanhGaussian.log_prob_of_presquash(params, jnp.full((1, 1), u))
    assert float(ours[0]) == pytest.approx(by_hand, rel=1e-5)


def test_tanh_gaussian_density_integrates_to_one_and_stays_finite_at_the_edges():
    # the density of a = tanh(u) over (-1, 1), on a fine grid of a (u = atanh a), sums to 1
    params = (jnp.full((1, 1), 0.3), jnp.full((1, 1), -0.5))
    a = np.linspace(-1, 1, 200_001)[1:-1]
    density = np.exp(np.asarray(TanhGaussian.log_prob_of_presquash(params, jnp.asarray(np.arctanh(a)[:, None]))),
                     dtype=np.float64)
    assert float(density.sum() * (a[1] - a[0])) == pytest.approx(1.0, abs=1e-4)
    # far in the tails tanh(u) rounds to 1 in float32; the log-probability stays finite
    far = TanhGaussian.log_prob_of_presquash((jnp.zeros((1, 1)), jnp.full((1, 1), 2.0)), jnp.full((1, 1), 30.0))
    assert np.isfinite(float(far[0]))
    action, log_prob = TanhGaussian.sample_and_log_prob(KEY, (jnp.zeros((1000, 3)), jnp.full((1000, 3), 2.0)))
    assert float(jnp.abs(action).max()) <= 1.0 and bool(jnp.isfinite(log_prob).all())


# ---------------------------------------------------------------- actions onto any bounds


class Bounds(Env):
    """A (2, 3) Box of asymmetric bounds; the observation echoes the action the env was given."""

    low = np.array([[-3.0, 0.0, 1.0], [-1.0, -1.0, 10.0]], np.float32)
    high = np.array([[1.0, 2.0, 5.0], [1.0, 0.0, 20.0]], np.float32)
    observation_space = spaces.Box(-100.0, 100.0, (6,), jnp.float32)
    action_space = spaces.Box(low, high, (2, 3), jnp.float32)

    def _ts(self, obs):
        f = jnp.zeros((), jnp.bool_)
        return TimeStep(obs=obs, reward=jnp.zeros(()), terminated=f, truncated=f, final_obs=obs,
                        action_mask=spaces.no_mask(self.action_space), info={})

    def reset(self, key):
        return jnp.zeros(()), self._ts(jnp.zeros((6,)))

    def step(self, state, action, key):
        assert action.shape == (2, 3)
        return state, self._ts(action.reshape(-1))


@pytest.mark.parametrize("name", ["sac", pytest.param("td3", marks=pytest.mark.slow)])  # one loop: SAC stands for both
def test_actions_reach_the_env_within_its_bounds_in_its_shape(name):
    agent = MODULES[name].ALGORITHM.make_agent(small(MODULES[name], num_envs=2), Bounds().to_vec(2))
    ends = agent.to_env(jnp.stack([-jnp.ones(6), jnp.ones(6)]))
    np.testing.assert_allclose(ends, np.stack([Bounds.low, Bounds.high]))
    assert agent.log_scale == pytest.approx(float(np.log((Bounds.high - Bounds.low) / 2).sum()))
    state = agent.init(KEY)
    update = jax.jit(agent.update)
    for _ in range(3):
        state, _ = update(state)
    seen = state.obs.reshape(-1, 2, 3)  # the last actions the env was given
    assert bool(((seen >= Bounds.low - 1e-6) & (seen <= Bounds.high + 1e-6)).all())


# ---------------------------------------------------------------- truncation, end to end


class ContinuousLoop(Env):
    """Observations alternate A = [1, 0], B = [0, 1], starting at A; a step from A pays 1, from B 0, whatever
    the action in [-1, 1]. Never terminates; a time limit truncates episodes after 3 steps (A, B, A, then
    final_obs B). With gamma 0.5: Q(A, .) = 1 / (1 - 0.25) = 4/3, Q(B, .) = 0.5 Q(A, .) = 2/3."""

    observation_space = spaces.Box(0.0, 1.0, (2,), jnp.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), jnp.float32)

    def _timestep(self, side, steps, reward):
        obs = jax.nn.one_hot(side, 2)
        return TimeStep(obs=obs, reward=reward, terminated=jnp.zeros((), jnp.bool_), truncated=steps >= 3,
                        final_obs=obs, action_mask=spaces.no_mask(self.action_space), info={})

    def reset(self, key):
        side, steps = jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
        return (side, steps), self._timestep(side, steps, jnp.zeros(()))

    def step(self, state, action, key):
        reward = (state[0] == 0).astype(jnp.float32)
        side, steps = 1 - state[0], state[1] + 1
        return (side, steps), self._timestep(side, steps, reward)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_truncation_bootstraps_from_final_obs(name):
    # Each third step from A is truncated into B. Its right target is 1 + 0.5 Q(B) = 4/3; treating the time
    # limit as termination gives 1, bootstrapping from the reset obs (A) 5/3: either moves Q(A) by 1/6 or
    # more. SAC's temperature is held near 0, so its soft values are the plain ones; TD3 explores widely, so
    # its critics have seen every action.
    module = MODULES[name]
    extra = dict(autotune=False, alpha=1e-6) if module is sac else dict(exploration_noise=1.0)  # every action seen
    config = small(module, total_timesteps=6_000, num_envs=8, num_steps=4, utd_ratio=0.25, buffer_size=2_000,
                   batch_size=64, learning_starts=300, gamma=0.5, critic_lr=3e-3, tau=0.05, hidden_sizes=(16,),
                   **extra)
    env = ContinuousLoop().to_vec(config.num_envs)
    agent = module.ALGORITHM.make_agent(config, env)
    state, _ = jax.jit(module.make_train(config, env))(KEY)
    obs = jnp.repeat(jnp.eye(2), 3, axis=0)
    actions = jnp.tile(jnp.array([[-0.9], [0.0], [0.9]]), (2, 1))
    q = agent.critic.apply(state.learner.critic, obs, actions)  # (critics, 6): A at three actions, then B
    np.testing.assert_allclose(q, jnp.broadcast_to(jnp.repeat(jnp.array([4 / 3, 2 / 3]), 3), q.shape), atol=0.06)


# ---------------------------------------------------------------- the gradient step's schedule


def _batch(agent, n=8):
    obs = jax.random.normal(KEY, (n, 3))
    return Transition(obs, jnp.zeros((n, agent.action_dim)), jnp.ones((n,)), jnp.zeros((n,), bool), obs)


def test_td3_updates_the_actor_and_targets_every_policy_delay_steps():
    agent = td3.TD3(td3.default_config("gymnax:Pendulum-v1", policy_delay=3),
                    pjrl_envs.make("gymnax:Pendulum-v1", num_envs=1))
    state = agent.init(KEY)
    same = lambda a, b: all(bool((x == y).all()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    step_fn = jax.jit(lambda step: agent.gradient_step(state.params, state.learner, _batch(agent), KEY, agent.config,
                                                       step))
    for step, moves in ((0, True), (1, False), (2, False), (3, True)):
        params, learner, metrics = step_fn(jnp.int32(step))
        assert not same(learner.critic, state.learner.critic)  # the critics learn every step
        assert same(params, state.params) != moves
        assert same(learner.target_actor, state.learner.target_actor) != moves
        assert same(learner.target_critic, state.learner.target_critic) != moves
        assert np.isfinite(float(metrics["actor_loss"]))


@pytest.mark.parametrize("autotune", [True, False])
def test_sac_temperature_moves_toward_the_target_entropy_only_when_tuned(autotune):
    # a policy far narrower than the target entropy (log std -5 in every state) must raise alpha
    agent = sac.SAC(sac.default_config("gymnax:Pendulum-v1", autotune=autotune),
                    pjrl_envs.make("gymnax:Pendulum-v1", num_envs=1))
    state = agent.init(KEY)
    narrow = jax.tree.map(lambda x: x, state.params)
    narrow["params"]["Dense_1"]["bias"] = jnp.full_like(narrow["params"]["Dense_1"]["bias"], -50.0)
    _, learner, metrics = jax.jit(agent.gradient_step, static_argnums=4)(narrow, state.learner, _batch(agent), KEY,
                                                                         agent.config, jnp.int32(0))
    assert float(metrics["entropy"]) < -agent.config.target_entropy_scale * agent.target_entropy
    if autotune:
        assert float(learner.log_alpha) > float(state.learner.log_alpha)
    else:
        assert float(learner.log_alpha) == float(state.learner.log_alpha)


# ---------------------------------------------------------------- the contract and sweeps


@pytest.mark.parametrize("name", sorted(MODULES))
def test_meets_the_contract_and_reports_finite_metrics_from_update_one(name):
    module = MODULES[name]
    agent = module.ALGORITHM.make_agent(small(module), pjrl_envs.make("gymnax:Pendulum-v1", num_envs=4))
    contract.check_agent(agent, name)
    state = agent.init(KEY)
    contract.check_state(state, agent, name)
    state, metrics = jax.jit(agent.update)(state)
    contract.check_metrics(metrics, name)
    assert all(np.isfinite(float(v)) for k, v in metrics.items() if k not in contract.EPISODE_METRICS)
    assert agent.learned == ("params", "learner")


def test_sweep_members_match_separate_runs():
    # the loop and the config's traced numbers are shared by SAC and TD3 (`offpolicy`): SAC stands for both
    module = sac
    configs = [small(module, tau=t, critic_lr=lr) for t, lr in ((0.01, 1e-3), (0.5, 3e-3))]
    env = pjrl_envs.make("gymnax:Pendulum-v1", num_envs=4)
    train = module.make_train(configs[0], env)
    swept = jax.jit(jax.vmap(train, in_axes=(None, 0)))(KEY, stack_configs(configs))[1]["critic_loss"]
    for i, config in enumerate(configs):
        alone = jax.jit(train)(KEY, config)[1]["critic_loss"]
        np.testing.assert_allclose(swept[i], alone, rtol=2e-5, atol=1e-6)
    assert float(jnp.abs(swept[0] - swept[1]).max()) > 0


# ---------------------------------------------------------------- bad settings


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("overrides, words", [
    (dict(tau=0.0), "tau=0 is out of range"),
    (dict(tau=1.5), "tau=1.5 is out of range"),
    (dict(buffer_size=64, batch_size=128), "buffer_size=64 is smaller than one batch"),
    (dict(utd_ratio=0.3), "utd_ratio=0.3 gives 4.8 gradient steps"),
    (dict(learning_starts=10**6), "learning_starts=1000000 must be"),
    (dict(gamma=1.5), "gamma=1.5 is out of range"),
])
def test_bad_settings_are_refused_before_compiling(name, overrides, words):
    with pytest.raises(ConfigError, match=words):
        MODULES[name].validate(small(MODULES[name], **overrides))


@pytest.mark.parametrize("name", sorted(MODULES))
def test_discrete_and_unbounded_action_spaces_are_refused(name, capsys):
    assert cli.main(["train", "--algo", name, "--env", "gymnax:CartPole-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs continuous (Box) actions" in err[0] and "use --algo dqn, pqn or ppo" in err[0]

    class Unbounded(ContinuousLoop):
        action_space = spaces.Box(-jnp.inf, jnp.inf, (1,), jnp.float32)

    with pytest.raises(ConfigError, match="are not finite"):
        MODULES[name].validate(small(MODULES[name], num_envs=2), Unbounded().to_vec(2))


# ---------------------------------------------------------------- learning


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODULES))
def test_learns_pendulum_within_20k_steps(name):
    # A random policy averages about -1200 on Pendulum; the bar is a mean of -200 over seeds within
    # 20k env steps, under greedy evaluation.
    module = MODULES[name]
    config = module.default_config("gymnax:Pendulum-v1")
    env = pjrl_envs.make("gymnax:Pendulum-v1", num_envs=config.num_envs)
    agent = module.ALGORITHM.make_agent(config, env)
    states, _ = jax.jit(jax.vmap(module.make_train(config, env)))(jax.random.split(KEY, 4))
    returns, _ = greedy_returns(agent, states.params, states.env_state, num_episodes=16)
    assert returns.mean() > -200, returns
