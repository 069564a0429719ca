"""Recurrent PPO (`torso=gru|lstm`): memory reset exactly at episode ends, truncation bootstrapped with the
ended episode's memory, whole sequences per minibatch, the loss replaying the rollout exactly, and memory
that learns what a memoryless policy cannot."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pjrl_envs
from pjrl_agents import cli
from pjrl_agents.algorithms import ppo

pytestmark = pytest.mark.xdist_group("recurrent")


def _agent(torso="gru", num_envs=4, num_steps=32, **env_options):
    config = ppo.default_config("gymnax:CartPole-v1", torso=torso, num_envs=num_envs, num_steps=num_steps,
                                num_minibatches=2, memory_size=16, total_timesteps=num_envs * num_steps)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=num_envs, **env_options)
    return ppo.PPO(config, env)


@pytest.fixture(scope="module")
def stepped():
    """A GRU agent on CartPole cut at 7 steps (truncations) stepped 40 times one step at a time, with
    what each step saw: memory before, the transition, the final observation."""
    agent = _agent(max_steps_in_episode=7)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    env_step = jax.jit(agent._env_step)
    env_step_raw = jax.jit(agent.env.step)
    steps = []
    for i in range(40):
        key = jax.random.PRNGKey(100 + i)
        before = state
        state, (transition, _) = env_step(state, key)
        _, step_key = jax.random.split(key)
        _, ts = env_step_raw(before.env_state, transition.action, step_key)
        steps.append((before, transition, ts, state))
    return agent, steps


def test_memory_is_zero_on_the_step_after_an_episode_end_and_only_there(stepped):
    agent, steps = stepped
    ended_somewhere = 0
    for before, transition, ts, after in steps:
        ended = np.asarray(ts.terminated | ts.truncated)
        zero = np.all(np.asarray(after.memory) == 0, axis=-1)
        np.testing.assert_array_equal(zero, ended)
        np.testing.assert_array_equal(np.asarray(after.start), ended)
        np.testing.assert_array_equal(np.asarray(transition.start), np.asarray(before.start))
        ended_somewhere += ended.sum()
    assert ended_somewhere >= 10


def test_a_truncated_step_bootstraps_with_the_memory_of_the_episode_that_ended(stepped):
    agent, steps = stepped
    checked = 0
    for before, transition, ts, after in steps:
        truncated = np.asarray(ts.truncated)
        if not truncated.any():
            continue
        params = before.params
        right = agent.network.apply(params, before.next_memory, ts.final_obs)[2]
        reset = agent.network.apply(params, jax.tree.map(jnp.zeros_like, before.next_memory), ts.final_obs)[2]
        np.testing.assert_allclose(np.asarray(transition.next_value)[truncated], np.asarray(right)[truncated],
                                   rtol=1e-5, atol=1e-6)
        assert np.all(np.abs(np.asarray(right - reset))[truncated] > 1e-4)  # the test can tell them apart
        checked += truncated.sum()
    assert checked >= 4


@pytest.mark.parametrize("torso", ["gru", "lstm"])
def test_the_loss_replays_the_rollout_exactly_from_whole_sequences(torso):
    agent = _agent(torso, num_envs=4, num_steps=64)
    state = jax.jit(agent.init)(jax.random.PRNGKey(1))
    first_memory = state.memory
    state, (traj, _) = jax.jit(lambda s: jax.lax.scan(agent._env_step, s, jax.random.split(jax.random.PRNGKey(2), 64)))(
        state)
    assert np.asarray(traj.terminated | traj.truncated).sum() >= 4  # episodes end inside the rollout
    batch = ppo.Batch(obs=traj.obs, mask=traj.mask, action=traj.action, log_prob=traj.log_prob, value=traj.value,
                      advantage=traj.value, target=traj.value, memory=first_memory, start=traj.start)
    minibatches = jax.jit(agent._minibatches)(batch, agent._order(jax.random.PRNGKey(3)))
    obs = np.asarray(traj.obs)  # (T, B, 4)
    seen = []
    for m in range(2):
        mb = jax.tree.map(lambda x: x[m], minibatches)
        assert np.asarray(mb.obs).shape == (64, 2, 4)
        for j in range(2):  # each column is one env's whole sequence, with that env's initial memory
            column = np.asarray(mb.obs)[:, j]
            env = [b for b in range(4) if np.array_equal(obs[:, b], column)]
            assert len(env) == 1
            seen.append(env[0])
            np.testing.assert_array_equal(np.asarray(jax.tree.leaves(mb.memory)[0])[j],
                                          np.asarray(jax.tree.leaves(first_memory)[0])[env[0]])
        actor_out, value = agent._unroll(state.params, mb.memory, mb.start, mb.obs)
        np.testing.assert_allclose(agent.dist.log_prob(actor_out, mb.action, mb.mask), mb.log_prob, atol=1e-5)
        np.testing.assert_allclose(value, mb.value, atol=1e-5)
    assert sorted(seen) == [0, 1, 2, 3]


def test_settings_that_cut_sequences_are_refused():
    from pjrl_agents.config import ConfigError
    config = ppo.default_config("gymnax:CartPole-v1", torso="gru", num_envs=4, num_minibatches=8)
    with pytest.raises(ConfigError, match="whole sequences"):
        ppo.validate(config)


@pytest.mark.slow
def test_memory_learns_memory_chain_where_the_mlp_cannot(tmp_path):
    """MemoryChain-bsuite (memory length 5): the context shown at the first step decides the reward
    at the last. A GRU remembers it; an MLP stays at chance (mean 0) at the same budget."""
    finals = {}
    for torso in ("gru", "mlp"):
        out = tmp_path / torso
        assert cli.main(["train", "--env", "gymnax:MemoryChain-bsuite", "--set", f"torso={torso}",
                         "--total-timesteps", "100000", "--set", "num_envs=16", "--set", "num_steps=32",
                         "--set", "lr=3e-3", "--set", "memory_size=32", "--quiet", "--no-tensorboard",
                         "--eval-episodes", "32", "--out", str(out)]) == 0
        finals[torso] = json.loads((out / "summary.json").read_text())["final_greedy_return_mean"]
    assert finals["gru"] >= 0.8, finals
    assert finals["mlp"] <= 0.5, finals


@pytest.mark.slow
def test_memory_balances_cartpole_without_its_velocities():
    """CartPole seen through positions only (`SelectObservation(env, (0, 2))`: cart position and pole
    angle, no velocities). A GRU infers the velocities and balances; an MLP cannot."""
    from pjrl_agents.run.evaluate import greedy_returns
    from pjrl_envs.wrappers import SelectObservation
    greedy = {}
    for torso in ("gru", "mlp"):
        config = ppo.default_config("gymnax:CartPole-v1", torso=torso, total_timesteps=500_000, num_envs=16,
                                    num_minibatches=4, lr=1e-3, memory_size=64)
        env = SelectObservation(pjrl_envs.make("gymnax:CartPole-v1", num_envs=16), (0, 2))
        agent = ppo.PPO(config, env)
        state, _ = jax.jit(jax.vmap(ppo.make_train(config, env)))(jax.random.split(jax.random.PRNGKey(0), 2))
        greedy[torso] = greedy_returns(agent, state.params, state.env_state, seed=1, num_episodes=16)[0]
    assert greedy["gru"].min() >= 400, greedy  # measured: 500, 500
    assert greedy["mlp"].max() <= 150, greedy  # measured: 44, 39


@pytest.mark.slow
def test_a_pixel_env_trains_evaluates_and_resumes_with_memory(tmp_path, capsys):
    """MinAtar frames through the CNN torso into an LSTM, end to end: train, eval, load_policy."""
    from pjrl_agents import load_policy
    out = tmp_path / "run"
    assert cli.main(["train", "--env", "gymnax:Breakout-MinAtar", "--set", "torso=lstm", "--total-timesteps",
                     "4096", "--set", "num_envs=8", "--set", "num_steps=32", "--set", "memory_size=16",
                     "--eval-episodes", "8", "--quiet", "--no-tensorboard", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "finished" and np.isfinite(summary["final_greedy_return_mean"])
    assert cli.main(["eval", str(out), "--episodes", "2"]) == 0
    assert "greedy" in capsys.readouterr().out
    policy = load_policy(out)
    env = pjrl_envs.make("gymnax:Breakout-MinAtar", num_envs=3)
    _, ts = env.reset(jax.random.PRNGKey(0))
    first = policy(ts.obs)
    assert first.shape == (3,) and policy.memory is not None
    policy(ts.obs, reset=np.array([True, False, False]))
    assert np.all(np.asarray(policy.memory[0])[0] != 0)  # recomputed from zero, then stepped


@pytest.mark.slow
def test_a_recurrent_run_resumed_from_a_checkpoint_matches_the_uninterrupted_run(tmp_path):
    """A GRU run cut back to its checkpoint at update 20 of 40, as a kill leaves it (the kill itself is
    tests/test_runs.py's), and resumed: memory and all, the same returns as the run that went straight through."""
    import shutil
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli.main(["train", "--quiet", "--no-tensorboard", "--eval-episodes", "0", "--set", "torso=gru",
                     "--set", "memory_size=16", "--total-timesteps", "20480", "--num-seeds", "2",
                     "--checkpoint-every", "20", "--out", str(whole)]) == 0
    shutil.copytree(whole, cut)
    (cut / "summary.json").unlink()
    shutil.rmtree(cut / "checkpoints" / "40")
    assert sorted(p.name for p in (cut / "checkpoints").iterdir() if p.name.isdigit()) == ["20"]
    # the rows past the checkpoint are what a killed run wrote after it; resume drops them
    assert cli.main(["train", "--resume", str(cut), "--quiet"]) == 0
    a = json.loads((cut / "summary.json").read_text())
    b = json.loads((whole / "summary.json").read_text())
    assert a["resumed_from_update"] == 20
    np.testing.assert_allclose(a["final_return_per_seed"], b["final_return_per_seed"], rtol=1e-5)
    rows = [json.loads(line) for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert sorted((r["seed"], r["update"]) for r in rows) == [(s, u) for s in (0, 1) for u in range(1, 41)]
