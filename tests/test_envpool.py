"""envpool through host callbacks: same-step auto-reset, seeds under vmap, errors, the task list.

Conformance (`check_env`) is in tests/test_conformance.py.
"""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

envpool = pytest.importorskip("envpool")

import pjrl_envs  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _rollout(env, key, actions):
    """Adapter transitions for given actions `(T, num_envs)`; returns (reset TimeStep, trajectory)."""
    def body(carry, action):
        state, ts = env.step(carry, action, key)
        return state, ts
    state, ts0 = env.reset(key)
    return ts0, jax.lax.scan(body, state, actions)[1]


def _envpool_reference(seed, actions, **options):
    """One env driven by envpool's own loop; reset transitions (the step after done) marked."""
    env = envpool.make("CartPole-v1", env_type="gymnasium", num_envs=1, seed=[int(seed)], **options)
    obs, _ = env.reset()
    steps, was_done, t = [], False, 0
    while t < len(actions) or was_done:
        action = actions[min(t, len(actions) - 1)]
        out, reward, term, trunc, _ = env.step(np.array([action], np.int32))
        steps.append(dict(obs=out[0], reward=float(reward[0]), term=bool(term[0]), trunc=bool(trunc[0]),
                          reset_transition=was_done))
        if not was_done:
            t += 1  # a reset transition ignores the action, so it consumes none
        was_done = bool(term[0] or trunc[0])
    return obs[0], steps


def test_reset_transition_never_reaches_the_agent():
    num_envs, T = 2, 120
    env = pjrl_envs.make("envpool:CartPole-v1", num_envs=num_envs, max_episode_steps=12)
    key = jax.random.PRNGKey(3)
    actions = jax.random.randint(jax.random.PRNGKey(4), (T, num_envs), 0, 2, dtype=jnp.int32)
    ts0, traj = jax.jit(lambda k, a: _rollout(env, k, a))(key, actions)
    seeds = np.asarray(jax.random.randint(key, (num_envs,), 0, 2**31 - 1, dtype=jnp.int32))

    for i in range(num_envs):
        first_obs, ref = _envpool_reference(seeds[i], np.asarray(actions[:, i]), max_episode_steps=12)
        np.testing.assert_array_equal(ts0.obs[i], first_obs)
        # the agent sees exactly envpool's transitions without the reset ones
        real = [s for s in ref if not s["reset_transition"]]
        resets = iter(s for s in ref if s["reset_transition"])
        for t in range(T):
            want = real[t]
            assert float(traj.reward[t, i]) == want["reward"] == 1.0  # never the reset step's 0
            assert bool(traj.terminated[t, i]) == want["term"]
            assert bool(traj.truncated[t, i]) == want["trunc"]
            np.testing.assert_array_equal(traj.final_obs[t, i], want["obs"])  # true last observation
            if want["term"] or want["trunc"]:
                # same step: obs is already the new episode's first observation
                np.testing.assert_array_equal(traj.obs[t, i], next(resets)["obs"])
            else:
                np.testing.assert_array_equal(traj.obs[t, i], want["obs"])
    ended = np.asarray(traj.terminated | traj.truncated)
    assert np.asarray(traj.terminated).sum() > 0 and np.asarray(traj.truncated).sum() > 0
    assert not np.array_equal(np.asarray(traj.obs)[ended], np.asarray(traj.final_obs)[ended])


def test_vmapped_seeds_share_one_pool_and_match_single_runs():
    env = pjrl_envs.make("envpool:CartPole-v1", num_envs=3)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    actions = jax.random.randint(jax.random.PRNGKey(1), (4, 50, 3), 0, 2, dtype=jnp.int32)
    run = jax.jit(lambda k, a: _rollout(env, k, a)[1])
    before = set(env._pools)
    batched = jax.jit(jax.vmap(lambda k, a: _rollout(env, k, a)[1]))(keys, actions)
    new = [env._pools[p] for p in set(env._pools) - before]
    assert [(p.rows, p.env.config["num_envs"]) for p in new] == [(4, 12)]  # one pool of seeds x envs
    for s in range(4):
        alone = run(keys[s], actions[s])
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(jax.tree.map(lambda x: x[s], batched))):
            np.testing.assert_array_equal(a, b)
    assert not np.array_equal(batched.obs[0], batched.obs[1])  # seeds differ


def test_stale_and_shared_states_are_refused():
    env = pjrl_envs.make("envpool:CartPole-v1", num_envs=2)
    key = jax.random.PRNGKey(0)
    state, _ = jax.jit(env.reset)(key)
    step = jax.jit(env.step)
    action = jnp.zeros((2,), jnp.int32)
    step(state, action, key)
    with pytest.raises(Exception, match="cannot re-step a saved or earlier state"):
        jax.block_until_ready(step(state, action, key))
    state, _ = jax.jit(env.reset)(key)
    shared = jax.jit(jax.vmap(env.step, in_axes=(None, 0, None)))
    with pytest.raises(Exception, match="--num-seeds"):
        jax.block_until_ready(shared(state, jnp.zeros((3, 2), jnp.int32), key))


def test_bad_names_and_options_are_said_plainly():
    with pytest.raises(pjrl_envs.UnknownEnvError, match="envpool:Pong-v5"):
        pjrl_envs.make("envpool:Pong-v4")
    with pytest.raises(pjrl_envs.UnknownEnvError, match="envpool:CartPole-v1"):
        pjrl_envs.make("envpool:cartpole-v1")
    with pytest.raises(pjrl_envs.OptionError, match="has no option frameskip; allowed: .*frame_skip"):
        pjrl_envs.make("envpool:Pong-v5", frameskip=4)
    with pytest.raises(pjrl_envs.OptionError, match="seeds come from the key"):
        pjrl_envs.make("envpool:Pong-v5", seed=1)
    with pytest.raises(pjrl_envs.OptionError, match="envpool rejected the options"):
        pjrl_envs.make("envpool:Pong-v5", frame_skip="four")
    env = pjrl_envs.make("envpool:Pong-v5", num_envs=1, frame_skip=2, stack_num=1, episodic_life=True)
    assert env.observation_space.shape == (1, 84, 84)
    assert "envpool:Pong-v5" in pjrl_envs.list_envs("envpool")


def test_smallest_positive_float_as_lower_bound_means_unbounded():
    # box2d declares float32's smallest positive value, dm_control float64's, where they mean "none"
    lander = pjrl_envs.make("envpool:LunarLander-v3")
    assert np.all(np.isneginf(lander.observation_space.low)) and np.all(np.isposinf(lander.observation_space.high))
    cheetah = pjrl_envs.make("envpool:CheetahRun-v1")
    assert all(np.all(np.isneginf(s.low)) for s in cheetah.observation_space.values())
    lander.close()
    cheetah.close()


def test_each_task_is_listed_once_by_its_own_name():
    names = pjrl_envs.list_envs("envpool")
    assert len(names) == len(set(names))
    assert {"envpool:Maze-v0", "envpool:CartPole-v1", "envpool:Highway-v0"} <= set(names)
    # aliases of those: envpool maps them to the same spec
    assert not {"envpool:Jumanji/Maze-v0", "envpool:phys2d/CartPole-v1", "envpool:highway-v0"} & set(names)


@pytest.mark.slow
def test_atari_example_runs(capsys):
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "envpool_atari.py"
    spec = importlib.util.spec_from_file_location("envpool_atari", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = example.main(["--total-timesteps", "32", "--num-envs", "2", "--num-steps", "16"])
    assert np.isfinite(metrics["loss"]) and metrics["entropy"] > 0
    assert "step         32" in capsys.readouterr().out


def test_a_game_over_on_the_time_limit_step_is_termination():
    """envpool flags every ending on the limit step `trunc`; Atari's game-over info corrects it."""
    from pjrl_adapters.envpool import _endings
    done = np.array([True, True, True, False, True])
    trunc = np.array([True, True, False, False, False])  # envpool's flag
    game_over = np.array([True, False, False, False, True])  # (Atari: info["terminated"])
    terminated, truncated = _endings(done, trunc, game_over)
    assert terminated.tolist() == [True, False, True, False, True]
    assert truncated.tolist() == [False, True, False, False, False]
    terminated, truncated = _endings(done, trunc, None)  # CartPole: nothing tells them apart
    assert terminated.tolist() == [False, False, True, False, True]
    assert truncated.tolist() == [True, True, False, False, False]


def test_several_seeds_train_with_no_device_flags(tmp_path):
    # pjrl lays a host env's seeds on one device when the user names none (one pool per process), where it
    # would split other envs' seeds over the cores; only a device count the user asked for is refused
    out = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--env", "envpool:CartPole-v1",
                          "--num-seeds", "4", "--total-timesteps", "2048", "--eval-episodes", "0", "--quiet",
                          "--no-tensorboard", "--out", str(out)], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PJRL_CPU_DEVICES": "2"})
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    run = json.loads((out / "run.json").read_text())
    assert run["devices"] == 1, run
