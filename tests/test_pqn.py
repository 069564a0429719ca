"""PQN: Q(lambda) returns by hand, truncation against termination, masks, bad input, the contract, sweeps,
learning CartPole."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents import algorithms, cli
from pjrl_agents.algorithms import contract, pqn
from pjrl_agents.config import ConfigError, stack_configs
from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep
from tests.envs import CounterEnv

KEY = jax.random.PRNGKey(0)
SMALL = pqn.PQNConfig(total_timesteps=2_048, num_envs=8, num_steps=16, num_epochs=2, num_minibatches=4,
                      hidden_sizes=(32, 32), epsilon_anneal_steps=1_000)


@pytest.fixture
def registered():
    """`pqn` known to the CLI for one test (installed metadata may predate its entry point)."""
    had = contract._registered.get("pqn")
    algorithms.register(pqn.ALGORITHM)
    yield
    if had is None:
        contract._registered.pop("pqn", None)


# ---------------------------------------------------------------- Q(lambda) returns by hand


# gamma 0.5; four steps with rewards 1..4. next_value[t] is max Q of the observation step t bootstraps from
# (for the truncated step, its final_obs: 300). Column 0 runs on; column 1 terminates at step 1 and is
# truncated at step 2, both mid-rollout.
REWARD = jnp.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]])
NEXT_VALUE = jnp.array([[10.0, 10.0], [20.0, 99.0], [30.0, 300.0], [40.0, 40.0]])
TERMINATED = jnp.array([[False, False], [False, True], [False, False], [False, False]])
TRUNCATED = jnp.array([[False, False], [False, False], [False, True], [False, False]])


@pytest.mark.parametrize("lam, expected", [
    # one-step Q-learning: r + 0.5 V(next), r alone where terminated, r + 0.5 V(final_obs) where truncated
    (0.0, [[6.0, 6.0], [12.0, 2.0], [18.0, 153.0], [24.0, 24.0]]),
    # Monte Carlo: 24 = 4 + 0.5 * 40 bootstraps at the rollout's end; 15 = 3 + 0.5 * 24; 9.5; 5.75.
    # Column 1: step 2 stops at its truncation (153), step 1 at its termination (2), step 0 = 1 + 0.5 * 2
    (1.0, [[5.75, 2.0], [9.5, 2.0], [15.0, 153.0], [24.0, 24.0]]),
    # half way: G_2 = 3 + 0.5 (0.5 * 24 + 0.5 * 30) = 16.5, G_1 = 2 + 0.5 (0.5 * 16.5 + 0.5 * 20) = 11.125,
    # G_0 = 1 + 0.5 (0.5 * 11.125 + 0.5 * 10) = 6.28125; column 1's step 0: 1 + 0.5 (0.5 * 2 + 0.5 * 10) = 4
    (0.5, [[6.28125, 4.0], [11.125, 2.0], [16.5, 153.0], [24.0, 24.0]]),
])
def test_q_lambda_returns_by_hand(lam, expected):
    targets = pqn.q_lambda_returns(REWARD, TERMINATED, TRUNCATED, NEXT_VALUE, 0.5, lam)
    np.testing.assert_allclose(targets, expected)


def test_a_step_both_terminated_and_truncated_bootstraps_from_nothing():
    both = jnp.array([[True], [False]])
    targets = pqn.q_lambda_returns(jnp.array([[1.0], [2.0]]), both, both, jnp.array([[50.0], [8.0]]), 0.5, 0.5)
    np.testing.assert_allclose(targets, [[1.0], [6.0]])


# ---------------------------------------------------------------- truncation against termination


class EndsEnv(Env):
    """Episodes of 3 steps, obs [t, kind, 1], reward t after the step; each episode is drawn (from its
    reset key) to end terminated (kind 0) or truncated (kind 1). Action 2 is legal only at even t,
    so the targets' masked maxima differ from plain ones."""

    observation_space = spaces.Box(0.0, 10.0, (3,), jnp.float32)
    action_space = spaces.Discrete(3)

    def _timestep(self, t, kind, reward, terminated, truncated):
        obs = jnp.stack([t, kind, jnp.ones(())]).astype(jnp.float32)
        mask = jnp.array([True, True, False]) | (jnp.arange(3) == 2) & (t % 2 == 0)
        return TimeStep(obs=obs, reward=reward, terminated=terminated, truncated=truncated, final_obs=obs,
                        action_mask=mask, info={})

    def reset(self, key):
        t, kind = jnp.zeros((), jnp.int32), jax.random.bernoulli(key).astype(jnp.int32)
        f = jnp.zeros((), jnp.bool_)
        return (t, kind), self._timestep(t, kind, jnp.zeros(()), f, f)

    def step(self, state, action, key):
        t, kind = state[0] + 1, state[1]
        end = t >= 3
        return (t, kind), self._timestep(t, kind, t.astype(jnp.float32), end & (kind == 0), end & (kind == 1))


def test_targets_bootstrap_from_final_obs_where_truncated_and_from_nothing_where_terminated():
    """One rollout's targets, worked out step by step from the network's Q of each observation: a truncated
    step bootstraps from max Q(final_obs) over all actions, a terminated one from nothing, the rest from
    the next observation's legal maximum, with lambda in between."""
    config = SMALL.replace(gamma=0.9, lam=0.7, reward_scale=0.5)
    env = EndsEnv().to_vec(config.num_envs)
    agent = pqn.PQN(config, env)
    state = agent.init(KEY)
    after, (traj, _) = agent.rollout(state, jax.random.PRNGKey(1), 0.5)
    targets = np.asarray(agent.targets(state.params, traj, after.obs, after.mask, config))

    q = lambda obs: np.asarray(agent.network.apply(state.params, obs))
    term, trunc = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert term.sum() >= 3 and trunc.sum() >= 3  # both kinds of end, mid-rollout
    obs, mask = np.asarray(traj.obs), np.asarray(traj.mask)
    next_obs = np.concatenate([obs[1:], np.asarray(after.obs)[None]])
    next_mask = np.concatenate([mask[1:], np.asarray(after.mask)[None]])
    reward = 0.5 * np.asarray(traj.reward)
    expected = np.zeros_like(targets)
    for b in range(config.num_envs):
        later = None
        for t in reversed(range(config.num_steps)):
            v_next = np.where(next_mask[t, b], q(next_obs[t, b][None])[0], -np.inf).max()
            if term[t, b]:
                g = reward[t, b]
            elif trunc[t, b]:
                g = reward[t, b] + 0.9 * q(np.asarray(traj.final_obs)[t, b][None])[0].max()
            else:
                g = reward[t, b] + 0.9 * (v_next if later is None else 0.7 * later + 0.3 * v_next)
            expected[t, b], later = g, g
    np.testing.assert_allclose(targets, expected, rtol=1e-5, atol=1e-5)


class TwoStateLoop(Env):
    """Observations alternate A = [1, 0], B = [0, 1] from A; a step from A pays 1, from B 0. Nothing
    terminates; a time limit truncates each episode after 3 steps (A, B, A, final_obs B). With gamma 0.5
    the true values are V(A) = 1 / (1 - 0.25) = 4/3 and V(B) = 2/3, whatever the action."""

    observation_space = spaces.Box(0.0, 1.0, (2,), jnp.float32)
    action_space = spaces.Discrete(2)

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


def test_training_through_time_limits_learns_the_true_values():
    # Every third step, from A, is truncated into B: its right target is 1 + 0.5 V(B) = 4/3. Taken as a
    # termination it is 1, bootstrapped from the reset obs (A) 5/3: either moves Q(A) by 1/6 or more.
    config = SMALL.replace(total_timesteps=16_384, num_steps=8, hidden_sizes=(16,), gamma=0.5, lam=0.5, lr=3e-3,
                           optimizer="adam")
    env = TwoStateLoop().to_vec(config.num_envs)
    agent = pqn.PQN(config, env)
    state, _ = jax.jit(pqn.make_train(config, env))(KEY)
    q = agent.network.apply(state.params, jnp.eye(2))  # rows A, B; a column per action
    np.testing.assert_allclose(q, [[4 / 3, 4 / 3], [2 / 3, 2 / 3]], atol=0.04)


# ---------------------------------------------------------------- action masks


PAY = jnp.array([0.1, 0.2, 0.3, 1.0])
P_LEGAL = jnp.array([1.0, 0.6, 0.6, 0.3])


class MaskedPayEnv(Env):
    """Action a pays PAY[a] when legal; each is legal with P_LEGAL[a], drawn anew every step. The
    observation is the mask; episodes never end, so the state's count of illegal actions covers the run."""

    observation_space = spaces.Box(0.0, 1.0, (4,), jnp.float32)
    action_space = spaces.Discrete(4)

    def _timestep(self, mask, reward):
        f = jnp.zeros((), jnp.bool_)
        obs = mask.astype(jnp.float32)
        return TimeStep(obs=obs, reward=reward, terminated=f, truncated=f, final_obs=obs, action_mask=mask, info={})

    def reset(self, key):
        mask = jax.random.uniform(key, (4,)) < P_LEGAL
        return {"mask": mask, "illegal": jnp.zeros((), jnp.int32)}, self._timestep(mask, jnp.zeros(()))

    def step(self, state, action, key):
        illegal = ~state["mask"][action]
        mask = jax.random.uniform(key, (4,)) < P_LEGAL
        return ({"mask": mask, "illegal": state["illegal"] + illegal},
                self._timestep(mask, jnp.where(illegal, -1.0, PAY[action])))


def test_masked_env_only_legal_actions_in_training_and_acting():
    config = SMALL.replace(total_timesteps=8_192, gamma=0.5, lr=3e-3, epsilon_anneal_steps=4_000)
    env = MaskedPayEnv().to_vec(config.num_envs)
    agent = pqn.PQN(config, env)
    state, metrics = jax.jit(pqn.make_train(config, env))(KEY)
    assert int(state.env_state.inner["illegal"].sum()) == 0  # exploration and greedy steps alike
    assert float(metrics["epsilon"][0]) == 1.0 and float(metrics["epsilon"][-1]) == pytest.approx(0.2)
    masks = jax.random.uniform(jax.random.PRNGKey(2), (512, 4)) < P_LEGAL
    masks = masks.at[:, 0].set(True)  # at least one legal action a row
    for key in (None, jax.random.PRNGKey(3)):
        action = np.asarray(agent.act(state.params, masks.astype(jnp.float32), masks, key))
        assert np.asarray(masks)[np.arange(512), action].all()
    # the greedy policy learned the best legal action
    rows = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], jnp.bool_)
    np.testing.assert_array_equal(agent.act(state.params, rows.astype(jnp.float32), rows), [3, 2, 1, 3])


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("overrides, words", [
    (dict(lam=1.5), r"lam=1.5 is out of range: it must lie in \[0, 1\]"),
    (dict(gamma=-0.1), r"gamma=-0.1 is out of range: it must lie in \[0, 1\]"),
    (dict(num_minibatches=3), r"num_minibatches=3 does not divide num_envs x num_steps = 2048; use one of"),
    (dict(total_timesteps=1_000), "total_timesteps=1000 is less than one update .* raise total_timesteps"),
    (dict(num_epochs=0), "num_epochs must be a positive number"),
    (dict(optimizer="sgd"), "optimizer='sgd'; use radam or adam"),
    (dict(torso="gru"), "torso='gru'; use auto, mlp, cnn, nature"),
    (dict(lr=0.0), r"lr=0 is out of range"),
])
def test_bad_config_fails_before_compiling(overrides, words):
    with pytest.raises(ConfigError, match=words):
        pqn.validate(pqn.default_config("gymnax:CartPole-v1", **overrides))


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="PQN has no setting lambda_"):
        pqn.default_config("gymnax:CartPole-v1", lambda_=0.9)


class BoxActionEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.Box(-1.0, 1.0, (1,))


def test_continuous_actions_are_refused_naming_the_algorithms_that_take_them(registered, capsys):
    with pytest.raises(ConfigError, match="PQN needs discrete actions; use --algo sac, td3 or ppo"):
        pqn.PQN(SMALL.replace(num_envs=2), BoxActionEnv().to_vec(2))
    assert cli.main(["train", "--algo", "pqn", "--env", "gymnax:Pendulum-v1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "pjrl: error: PQN needs discrete actions; use --algo sac, td3 or ppo"


class MultiDiscreteEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.MultiDiscrete((2, 3))


def test_several_discrete_actions_are_refused_naming_ppo():
    with pytest.raises(ConfigError, match="PQN needs one Discrete action, not MultiDiscrete; use --algo ppo"):
        pqn.PQN(SMALL.replace(num_envs=2), MultiDiscreteEnv().to_vec(2))


def test_defaults_follow_the_env():
    cartpole = pqn.default_config("gymnax:CartPole-v1")
    assert (cartpole.reward_scale, cartpole.lam, cartpole.epsilon_anneal_steps) == (0.1, 0.95, 100_000)
    breakout = pqn.default_config("gymnax:Breakout-MinAtar", total_timesteps=1_000_000)
    assert (breakout.lam, breakout.num_envs, breakout.epsilon_anneal_steps) == (0.65, 128, 100_000)
    assert pqn.default_config("gymnax:CartPole-v1", epsilon_anneal_steps=7).epsilon_anneal_steps == 7
    env = pjrl_envs.make("gymnax:Breakout-MinAtar", num_envs=2)
    assert pqn.PQN(breakout.replace(num_envs=2), env).network.torso == "cnn"


# ---------------------------------------------------------------- the contract


def test_agent_state_and_metrics_meet_the_contract():
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=SMALL.num_envs)
    agent = pqn.ALGORITHM.make_agent(SMALL, env)
    contract.check_agent(agent, "pqn")
    state = agent.init(KEY)
    contract.check_state(state, agent, "pqn")
    assert agent.learned == ("params", "opt_state")
    state, metrics = jax.jit(agent.update)(state)
    contract.check_metrics(metrics, "pqn")
    for name in ("loss", "q_value", "epsilon"):  # finite from update 1
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["loss"]) > 0 and int(state.update) == 1


@pytest.mark.slow
def test_sweep_members_match_separate_runs():
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=SMALL.num_envs)
    train = pqn.make_train(SMALL, env)
    configs = [SMALL.replace(lr=1e-4, lam=0.0), SMALL.replace(lr=1e-3, lam=0.5), SMALL.replace(lr=1e-2, gamma=0.9)]
    keys = jnp.stack([jax.random.PRNGKey(3)] * 3)
    states, metrics = jax.jit(jax.vmap(train))(keys, stack_configs(configs))
    single = jax.jit(train)
    for i, cfg in enumerate(configs):
        s, m = single(keys[0], jax.tree.map(jnp.asarray, cfg))
        np.testing.assert_allclose(metrics["loss"][i], m["loss"], rtol=1e-4, atol=1e-6)
        for a, b in zip(jax.tree.leaves(states.params), jax.tree.leaves(s.params)):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-5)
    assert not np.allclose(metrics["loss"][0], metrics["loss"][2])  # and the members really differ


@pytest.mark.slow
def test_pjrl_train_pqn_writes_summary_and_metrics(registered, tmp_path, monkeypatch):
    monkeypatch.setenv("PJRL_CACHE_DIR", "off")
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", "pqn", "--total-timesteps", "4096", "--set", "hidden_sizes=32,32",
                     "--eval-episodes", "2", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "pqn" and summary["total_timesteps"] == 4096 and summary["num_updates"] == 2
    assert summary["config"]["reward_scale"] == 0.1  # CartPole's defaults applied
    assert summary["config"]["epsilon_anneal_steps"] == 819  # 0.2 of the run's total
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("episode_return", "episode_length", "episodes", "loss", "q_value", "epsilon"):
        assert name in header


# ---------------------------------------------------------------- learning


@pytest.mark.slow
def test_learns_cartpole():
    """purejaxql's CartPole config, 500k steps: the greedy policy balances (500 is the most; random ~20)."""
    from pjrl_agents.run.evaluate import greedy_returns
    config = pqn.default_config("gymnax:CartPole-v1")
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=config.num_envs)
    agent = pqn.PQN(config, env)
    state, metrics = jax.jit(jax.vmap(pqn.make_train(config, env)))(jax.random.split(KEY, 2))
    greedy, _ = greedy_returns(agent, state.params, state.env_state, num_episodes=10)
    assert greedy.mean() >= 400 and greedy.min() >= 200, greedy
    assert np.isfinite(np.asarray(metrics["loss"])).all()
    assert np.asarray(metrics["episode_return"])[:, -10:].mean() > 100  # exploring at epsilon 0.2
