"""DQN: TD targets by hand, bad input, legal actions under masks, learning CartPole."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents import cli
from pjrl_agents.algorithms import dqn, values
from pjrl_agents.config import ConfigError
from pjrl_envs import spaces
from pjrl_envs.core import Env
from pjrl_envs.types import TimeStep
from tests.envs import CounterEnv

KEY = jax.random.PRNGKey(0)


# ---------------------------------------------------------------- TD targets by hand


def test_td_target_one_step_ongoing_terminated_truncated():
    # gamma 0.9; rows: ongoing, terminated, truncated. next_value is V of the row's next obs
    # in the buffer (a reset obs for the two that ended), final_value V(final_obs).
    reward = jnp.array([[1.0], [2.0], [3.0]])
    terminated = jnp.array([[False], [True], [False]])
    truncated = jnp.array([[False], [False], [True]])
    final_value = jnp.array([[7.0], [7.0], [5.0]])
    next_value = jnp.array([10.0, 10.0, 10.0])
    target = dqn.td_target(reward, terminated, truncated, final_value, next_value, 0.9)
    # ongoing: 1 + 0.9 * 10; terminated: 2; truncated: 3 + 0.9 * 5 (from final_obs, not the reset obs)
    np.testing.assert_allclose(target, [10.0, 2.0, 7.5])


def test_td_target_n_step_stops_at_the_first_episode_end():
    # gamma 0.5, n 2; rewards [1, 2] on every row, next_value 8 after the second step.
    reward = jnp.array([[1.0, 2.0]] * 5)
    terminated = jnp.array([[False, False], [True, False], [False, False], [False, False], [False, True]])
    truncated = jnp.array([[False, False], [False, False], [True, False], [False, True], [False, False]])
    final_value = jnp.array([[9.0, 9.0], [9.0, 9.0], [6.0, 9.0], [9.0, 4.0], [9.0, 9.0]])
    next_value = jnp.full((5,), 8.0)
    target = dqn.td_target(reward, terminated, truncated, final_value, next_value, 0.5)
    expected = [1 + 0.5 * 2 + 0.25 * 8,  # ongoing: two rewards, then bootstrap
                1,  # terminated on the first step: the second reward is the next episode's
                1 + 0.5 * 6,  # truncated on the first step: bootstrap from its final obs
                1 + 0.5 * 2 + 0.25 * 4,  # truncated on the second step
                1 + 0.5 * 2]  # terminated on the second step
    np.testing.assert_allclose(target, expected)


def test_q_loss_mse_and_huber():
    apply_fn = lambda params, obs: obs  # Q-values are the observation itself
    q = jnp.array([[1.0, 5.0], [0.0, -2.0]])
    action = jnp.array([1, 0])
    target = jnp.array([2.0, 0.5])  # errors 3 and -0.5
    mse, _ = dqn.q_loss(None, apply_fn, q, action, target, "mse")
    huber, metrics = dqn.q_loss(None, apply_fn, q, action, target, "huber")
    np.testing.assert_allclose(mse, (9 + 0.25) / 2)
    np.testing.assert_allclose(huber, ((3 - 0.5) + 0.5 * 0.25) / 2)
    np.testing.assert_allclose(metrics["q_value"], 2.5)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("overrides, words", [
    (dict(buffer_size=64, batch_size=128), "buffer_size=64 is smaller than one batch"),
    (dict(learning_starts=600_000), "learning_starts=600000"),
    (dict(num_envs=0), "num_envs must be a positive number"),
    (dict(train_interval=7), "train_interval=7 does not divide"),
    (dict(loss="l1"), "use mse or huber"),
    (dict(tau=0.0), "tau=0.0"),
])
def test_bad_config_fails_before_compiling(overrides, words):
    with pytest.raises(ConfigError, match=words):
        dqn.validate(dqn.default_config("gymnax:CartPole-v1", **overrides))


def test_unknown_setting_is_named():
    with pytest.raises(ConfigError, match="no setting epsilon_end"):
        dqn.default_config("gymnax:CartPole-v1", epsilon_end=0.1)


class BoxActionEnv(CounterEnv):
    def __init__(self):
        super().__init__()
        self.action_space = spaces.Box(-1.0, 1.0, (1,))


def test_continuous_actions_name_ppo(capsys):
    with pytest.raises(ConfigError, match="DQN needs discrete actions; use --algo ppo"):
        dqn.DQN(dqn.DQNConfig(num_envs=2), BoxActionEnv().to_vec(2))
    assert cli.main(["train", "--env", "gymnax:Pendulum-v1", "--algo", "dqn", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "pjrl: error: DQN needs discrete actions; use --algo ppo"


# ---------------------------------------------------------------- action masks


def test_epsilon_greedy_keeps_to_legal_actions_each_equally_likely():
    q = jnp.tile(jnp.array([[0.0, 1.0, 9.0, 3.0]]), (20000, 1))  # the best action, 2, is illegal
    mask = jnp.tile(jnp.array([[True, True, False, True]]), (20000, 1))
    explore = np.asarray(values.epsilon_greedy(KEY, q, mask, 1.0))
    assert set(explore.tolist()) == {0, 1, 3}
    np.testing.assert_allclose(np.bincount(explore, minlength=4) / 20000, [1 / 3, 1 / 3, 0, 1 / 3], atol=0.015)
    greedy = np.asarray(values.epsilon_greedy(KEY, q, mask, 0.0))
    assert (greedy == 3).all()
    # eps 0.3: a random legal action 30 % of the time, which is not the greedy one 2/3 of those times
    some = np.asarray(values.epsilon_greedy(KEY, q, mask, 0.3))
    np.testing.assert_allclose(np.bincount(some, minlength=4) / 20000, [0.1, 0.1, 0, 0.8], atol=0.015)


PAY = jnp.array([0.1, 0.2, 0.3, 1.0])
P_LEGAL = jnp.array([1.0, 0.6, 0.6, 0.3])


class MaskedPayEnv(Env):
    """Action a pays PAY[a] when legal; each is legal with P_LEGAL[a], drawn anew every step.

    The observation is the mask. Episodes never end, so the count of illegal
    actions in the state survives the whole run.
    """

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
        reward = jnp.where(illegal, -1.0, PAY[action])
        mask = jax.random.uniform(key, (4,)) < P_LEGAL
        return {"mask": mask, "illegal": state["illegal"] + illegal}, self._timestep(mask, reward)


def test_masked_env_only_legal_actions_and_greedy_learns_the_best_legal_one():
    config = dqn.DQNConfig(total_timesteps=8_000, num_envs=8, num_steps=4, buffer_size=2_000, batch_size=64,
                           train_interval=8, target_update_interval=200, learning_starts=500, gamma=0.5,
                           lr=1e-3, epsilon_anneal_steps=4_000, hidden_sizes=(32,), double_q=True)
    env = MaskedPayEnv().to_vec(config.num_envs)
    agent = dqn.DQN(config, env)
    state, metrics = jax.jit(dqn.make_train(config, env))(KEY)
    # every env of the vector counted its illegal actions; exploration and the greedy pick both ran
    assert int(state.env_state.inner["illegal"].sum()) == 0
    assert float(metrics["epsilon"][-1]) == pytest.approx(0.05)
    masks = jnp.array([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 1]], jnp.bool_)
    greedy = agent.act(state.params, masks.astype(jnp.float32), masks)
    np.testing.assert_array_equal(greedy, [3, 2, 1, 3])


# ---------------------------------------------------------------- truncation, end to end


class TwoStateLoop(Env):
    """Observations alternate A = [1, 0], B = [0, 1], starting at A; a step from A pays 1, from B 0.

    The MDP never terminates; a time limit truncates episodes after 3 steps (A, B,
    A, then final_obs B). With gamma 0.5 the true values are V(A) = 1 / (1 - 0.25)
    = 4/3 and V(B) = 0.5 V(A) = 2/3, whatever the action.
    """

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


def test_truncation_bootstraps_from_final_obs_through_the_buffer():
    # Each third step from A is truncated into B. Its right target is 1 + 0.5 V(B) = 4/3; treating the
    # time limit as termination gives 1, bootstrapping from the reset obs (A) 5/3: either moves Q(A)
    # by 1/6 or more. n_step 2 runs the n-step path across episode ends too.
    config = dqn.DQNConfig(total_timesteps=6_000, num_envs=8, num_steps=4, buffer_size=2_000, batch_size=64,
                           train_interval=4, target_update_interval=64, learning_starts=300, gamma=0.5,
                           lr=3e-3, epsilon_anneal_steps=1_000, hidden_sizes=(16,), n_step=2)
    env = TwoStateLoop().to_vec(config.num_envs)
    agent = dqn.DQN(config, env)
    state, _ = jax.jit(dqn.make_train(config, env))(KEY)
    q = agent.network.apply(state.params, jnp.eye(2))  # rows A, B; a column per action
    np.testing.assert_allclose(q, [[4 / 3, 4 / 3], [2 / 3, 2 / 3]], atol=0.05)


# ---------------------------------------------------------------- learning


@pytest.mark.slow
def test_learns_cartpole_beyond_a_random_policy():
    # A random policy averages about 22 on CartPole. Seeds of 50k steps spread widely (16 of them: 64 to
    # 460, mean about 177), so three seeds must average over 100 and each more than twice random.
    config = dqn.default_config("gymnax:CartPole-v1", total_timesteps=50_000, learning_starts=1_000,
                                epsilon_anneal_steps=20_000, lr=5e-4, target_update_interval=200)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=config.num_envs)
    _, metrics = jax.jit(jax.vmap(dqn.make_train(config, env)))(jax.random.split(KEY, 3))
    returns = np.asarray(metrics["episode_return"])  # (seeds, updates)
    final = returns[:, -returns.shape[1] // 20:].mean(1)
    assert final.min() > 50 and final.mean() > 100, final
    loss = np.asarray(metrics["loss"])
    assert np.isfinite(loss).all() and (loss[:, -1] > 0).all()


def test_pjrl_train_dqn_writes_summary_and_metrics(tmp_path, monkeypatch):
    """... and lowers its one unbatched run's chunk with each Threefry hash held in a kernel of its own."""
    from pjrl_agents.run import runner
    monkeypatch.setenv("PJRL_CACHE_DIR", "off")
    entered, held = [], runner.prng.held
    monkeypatch.setattr(runner.prng, "held", lambda: entered.append(1) or held())
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", "dqn", "--total-timesteps", "3000", "--set", "learning_starts=1000",
                     "--out", str(out), "--quiet"]) == 0
    assert entered == [1] and dqn.DQN.holds_keys
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "dqn" and summary["total_timesteps"] == 3000
    assert summary["config"]["batch_size"] == 128  # CartPole defaults applied
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for name in ("episode_return", "episode_length", "episodes", "loss", "q_value", "epsilon"):
        assert name in header


@pytest.mark.slow
def test_pjrl_train_reports_the_greedy_return_beside_the_exploring_one(capsys, tmp_path):
    """Catch at 50k steps through `pjrl train`: exploration anneals over half the run, and the greedy policy
    is scored apart."""
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", "dqn", "--env", "gymnax:Catch-bsuite", "--total-timesteps", "50000",
                     "--no-tensorboard", "--quiet", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["epsilon_anneal_steps"] == 25_000
    assert summary["final_greedy_return_mean"] >= 0.9  # a random policy scores about -0.6
    assert summary["greedy_episodes"] == 10 and "final_greedy_return_mean" in capsys.readouterr().out


@pytest.mark.slow
def test_truncation_bootstrap_valued_at_replay_is_not_stale():
    """On a probe worth exactly 10 everywhere and truncated every 10 steps, with a buffer holding the
    whole run, valuing V(final_obs) at replay time reaches 10 while stored values lag behind it."""
    from benchmarks.dqn_truncation import TRUE_VALUE, run
    errors = {}
    for mode in ("collect", "replay"):
        q, _ = run(mode, seeds=2, period=10, total=8000)
        errors[mode] = abs(float(q[:, -1].mean()) - TRUE_VALUE)
    assert errors["replay"] < 1.0
    assert errors["collect"] > 2 * errors["replay"]


@pytest.mark.parametrize("n_step", [1, 3])
def test_replay_values_one_observation_per_row_with_the_targets_of_valuing_every_final_obs(n_step):
    """Picking each row's bootstrap observation before the target network runs gives the targets of
    valuing the next observation and every step's final_obs (their masks: the next one's, all actions)."""
    config = dqn.default_config("gymnax:CartPole-v1", total_timesteps=2_000, learning_starts=0, n_step=n_step,
                                batch_size=256)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=config.num_envs, max_steps_in_episode=4)
    agent = dqn.DQN(config, env)
    agent.value_in_step = False  # the batches' next observations valued in one pass, by `_sample`
    state = jax.jit(lambda k: jax.lax.fori_loop(0, 30, lambda i, s: agent.update(s)[0], agent.init(k)))(KEY)
    key = jax.random.PRNGKey(3)
    batch = jax.tree.map(lambda x: x[0], agent._sample(state.buffer, key, state.target_params))
    next_value = values.masked_max(batch.q_next, batch.next_mask)
    ours = dqn.td_target(batch.reward, batch.terminated, batch.truncated,
                         jnp.broadcast_to(next_value[:, None], batch.reward.shape), next_value, config.gamma)
    seq = agent.buffer.sample(state.buffer, key)  # the same draw, every observation valued
    seq = jax.tree.map(lambda x: x[:256], seq)  # the first gradient step's rows
    q = lambda obs: agent.network.apply(state.target_params, obs)
    final = jnp.stack([values.masked_max(q(seq.final_obs[:, k]), jnp.ones((len(seq.reward), 2), bool))
                       for k in range(n_step)], 1)
    by_hand = dqn.td_target(seq.reward[:, :n_step], seq.terminated[:, :n_step], seq.truncated[:, :n_step], final,
                            values.masked_max(q(seq.obs[:, n_step]), seq.mask[:, n_step]), config.gamma)
    first_ended = np.argmax(np.asarray(seq.terminated | seq.truncated)[:, :n_step], 1)
    assert np.asarray(seq.truncated)[np.arange(256), first_ended].sum() > 10  # rows that bootstrap from final_obs
    np.testing.assert_allclose(ours, by_hand, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("double_q", [False, True])
def test_valuing_next_observations_in_each_gradient_step_learns_the_same_numbers(double_q):
    """`value_in_step` (the target network values each batch inside its gradient step, for a CPU that runs
    kernels side by side) trains to the same parameters as valuing an update's batches in one pass."""
    config = dqn.default_config("gymnax:CartPole-v1", total_timesteps=2_000, learning_starts=300, double_q=double_q,
                                target_update_interval=200)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=config.num_envs, max_steps_in_episode=15)
    params = {}
    for in_step in (False, True):
        agent = dqn.DQN(config, env)
        agent.value_in_step = in_step  # (as built, it follows the scheduler this process's JAX started with)
        state, metrics = jax.jit(lambda k: jax.lax.scan(lambda s, _: agent.update(s), agent.init(k), None, 12))(KEY)
        assert float(metrics["learning"][-1]) == 1.0 and float(metrics["loss"][-1]) > 0
        params[in_step] = state.params
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7), params[False], params[True])
