"""Scale-out: seeds and one seed's envs over 4 fake CPU devices, two processes, early errors.

The device count is fixed when JAX starts, so runs on several devices happen in
subprocesses started with XLA_FLAGS=--xla_force_host_platform_device_count.
"""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.algorithms import ppo
from pjrl_agents.algorithms.distributions import Categorical
from pjrl_agents.algorithms.networks import ActorCritic
from pjrl_agents.algorithms.shared import episode_metrics

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group("scale")


# These runs are tiny, so compiling dominates: skip XLA's costliest CPU code optimisations.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"


def _env(devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}",
               JAX_PLATFORMS="cpu")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


# Runs in a subprocess that sees 4 CPU devices; prints one JSON line. Its second argument names what to do:
# "errors" (refusals, before compiling), "seeds_on_D" (4 seeds on D devices), "envs_on_4" (one seed's envs
# over 4 devices, long enough to learn), "rnn" (recurrent PPO: seeds over 2 devices, one seed's envs over 4).
FOUR_DEVICES = r"""
import json, sys
from pjrl_agents.run import runner
from pjrl_agents.config import ConfigError
from pjrl_agents.run.spec import RunSpec
out, parts = sys.argv[1], sys.argv[2].split(",")
res = {"errors": {}}

def error(name, **kw):
    try:
        runner.train(RunSpec(**kw), out=f"{out}/bad", progress=None)
    except ConfigError as e:
        res["errors"][name] = str(e)

if "errors" in parts:
    error("seeds", num_seeds=3, devices=4)
    error("members", num_seeds=3, sweep=["lr=1e-3,1e-4"], devices=4)
    error("envs", num_seeds=1, settings=dict(num_envs=6), devices=4)
    error("minibatches", num_seeds=1, settings=dict(num_envs=8, num_steps=3, num_minibatches=4), devices=4)
    error("too_many", devices=5)

    # a host env (stepped through callbacks, as envpool is) gets one device per process
    import jax, pjrl_envs
    from pjrl_agents.run import devices

    class HostEnv(type(pjrl_envs.make("gymnax:CartPole-v1", num_envs=4))):
        host_callbacks = True

    host = HostEnv(pjrl_envs.make("gymnax:CartPole-v1", num_envs=4).env, 4)
    try:
        devices.plan(4, num_envs=4, num_seeds=4).check_env(host)
    except ConfigError as e:
        res["errors"]["host_env"] = str(e)

small = dict(total_timesteps=4 * 64 * 8, num_envs=4, num_steps=64)  # 8 updates
for d in (4, 2, 1):  # one and two seeds per device; compared by their training curves alone
    if f"seeds_on_{d}" in parts:
        runner.train(RunSpec(settings=small, num_seeds=4, seed=7, devices=d, eval_episodes=0, tensorboard=False),
                     out=f"{out}/seeds_on_{d}", progress=None)
if "envs_on_4" in parts:
    s = runner.train(RunSpec(settings=dict(total_timesteps=98304, num_envs=64, num_steps=32, lr=3e-3), num_seeds=1,
                             devices=4, chunks=8), out=f"{out}/envs_on_4", progress=None)
    res["learned"] = {k: s[k] for k in ("final_return_mean", "total_timesteps", "num_updates")}
if "rnn" in parts:
    rnn = dict(small, torso="gru", memory_size=16)
    for d in (2, 1):
        runner.train(RunSpec(settings=rnn, num_seeds=4, seed=7, devices=d, eval_episodes=0),
                     out=f"{out}/rnn_seeds_on_{d}", progress=None)
    s = runner.train(RunSpec(settings=dict(rnn, num_envs=16, total_timesteps=16 * 64 * 4), devices=4, eval_episodes=2),
                     out=f"{out}/rnn_envs_on_4", progress=None)
    res["rnn_envs"] = {k: s[k] for k in ("status", "num_updates", "final_greedy_return_mean")}
print(json.dumps(res))
"""


def _on_four_devices(out: Path, *parts: str) -> dict:
    res = subprocess.run([sys.executable, "-c", FOUR_DEVICES, str(out), ",".join(parts)], env=_env(4), cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory):
    """The refusals on 4 devices, each before anything compiles (the fast tier's)."""
    out = tmp_path_factory.mktemp("four_devices")
    return out, _on_four_devices(out, "errors")


@pytest.fixture(scope="module")
def four_devices_runs(tmp_path_factory):
    """The runs on 4 devices (the slow tier's): 4 seeds on 4, 2 and 1, a learning run with one seed's envs
    over 4, recurrent PPO."""
    out = tmp_path_factory.mktemp("four_devices_runs")
    return out, _on_four_devices(out, "seeds_on_4", "seeds_on_2", "seeds_on_1", "envs_on_4", "rnn")


def _curves(run_dir: Path) -> dict:
    """metrics.csv -> {name: (seeds, updates)} (the file holds each chunk's rows in turn)."""
    rows = sorted(csv.DictReader(open(run_dir / "metrics.csv")), key=lambda r: (int(r["seed"]), int(r["update"])))
    seeds = 1 + max(int(r["seed"]) for r in rows)
    return {k: np.array([float(r[k]) for r in rows]).reshape(seeds, -1)
            for k in ("episode_return", "loss", "entropy")}


@pytest.mark.slow
@pytest.mark.parametrize("devices", [4, 2])
def test_seeds_sharded_over_devices_equal_one_device(four_devices_runs, devices):
    out, _ = four_devices_runs
    sharded, single = _curves(out / f"seeds_on_{devices}"), _curves(out / "seeds_on_1")
    assert sharded["episode_return"].shape == (4, 8)
    for k in sharded:
        np.testing.assert_allclose(sharded[k], single[k], rtol=1e-4, atol=1e-4, err_msg=k)
    # the seeds really are different runs, with episodes that ended
    returns = sharded["episode_return"][:, -1]
    assert len(set(np.round(returns, 3))) == 4 and returns.min() > 5, returns
    assert json.loads((out / f"seeds_on_{devices}" / "summary.json").read_text())["total_timesteps"] == 4 * 64 * 8


@pytest.mark.slow
def test_recurrent_ppo_shards_seeds_and_envs(four_devices_runs):
    out, res = four_devices_runs
    sharded, single = _curves(out / "rnn_seeds_on_2"), _curves(out / "rnn_seeds_on_1")
    for k in sharded:
        np.testing.assert_allclose(sharded[k], single[k], rtol=1e-4, atol=1e-4, err_msg=k)
    assert res["rnn_envs"]["status"] == "finished" and res["rnn_envs"]["num_updates"] == 4
    assert res["rnn_envs"]["final_greedy_return_mean"] > 5


@pytest.mark.slow
def test_one_seed_with_envs_split_over_four_devices_learns(four_devices_runs):
    _, res = four_devices_runs
    learned = res["learned"]
    assert learned["total_timesteps"] == 98304 and learned["num_updates"] == 98304 // (64 * 32)
    # a random policy averages about 22 steps on CartPole
    assert learned["final_return_mean"] > 120, learned


def test_counts_that_do_not_divide_are_refused_before_compiling(four_devices):
    _, res = four_devices
    errors = res["errors"]
    assert set(errors) == {"seeds", "members", "envs", "minibatches", "too_many", "host_env"}, errors
    assert all("\n" not in e for e in errors.values())
    assert "num_seeds=3" in errors["seeds"] and "num_seeds=4" in errors["seeds"]
    assert "6 runs" in errors["members"] and "num_seeds=2 or num_seeds=4" in errors["members"]
    assert "num_envs=6" in errors["envs"] and "num_envs=4 or num_envs=8" in errors["envs"]
    assert "num_minibatches=4" in errors["minibatches"]
    assert "only 4 cpu devices" in errors["too_many"]
    assert "one pool per process" in errors["host_env"] and "--devices 1" in errors["host_env"]


@pytest.mark.slow
def test_two_processes_train_one_agent_and_only_process_0_writes(tmp_path):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--total-timesteps", "2048",
            "--num-envs", "8", "--set", "num_steps=32", "--quiet"]
    procs = []
    for i in range(2):
        (tmp_path / f"p{i}").mkdir()
        procs.append(subprocess.Popen([sys.executable, "-m", "pjrl_agents.cli", "train", *args, "--process-id", str(i)],
                                      cwd=tmp_path / f"p{i}", env=_env(1), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (stdout, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    summaries = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outs]
    # one seed, its 8 envs split over the two processes' devices: both hold the same agent and metrics
    assert summaries[0]["final_return_mean"] == summaries[1]["final_return_mean"]
    assert summaries[0]["total_timesteps"] == 2048
    written = list((tmp_path / "p0" / "runs").iterdir())
    assert len(written) == 1 and (written[0] / "summary.json").exists() and (written[0] / "metrics.csv").exists()
    assert not (tmp_path / "p1" / "runs").exists()


@pytest.mark.slow
def test_train_then_eval_and_load_policy_on_two_devices(tmp_path):
    """One seed, its envs split over 2 devices: eval and load_policy rebuild it through the same builder."""
    out = tmp_path / "two"
    cmd = [sys.executable, "-m", "pjrl_agents.cli"]
    res = subprocess.run(cmd + ["train", "--total-timesteps", "4096", "--num-envs", "8", "--set", "num_steps=32",
                                "--devices", "2", "--quiet", "--out", str(out)], env=_env(2), cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((out / "run.json").read_text())["devices"] == 2
    res = subprocess.run(cmd + ["eval", str(out), "--episodes", "3"], env=_env(2), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "greedy" in res.stdout and "stochastic" in res.stdout
    # and from a process that sees one device: the checkpoint comes back whole
    code = ("import json, sys, jax, pjrl_envs; from pjrl_agents import load_policy; p = load_policy(sys.argv[1]); "
            "_, ts = pjrl_envs.make('gymnax:CartPole-v1', num_envs=3).reset(jax.random.PRNGKey(0)); "
            "print(json.dumps(p(ts.obs).tolist()))")
    res = subprocess.run([sys.executable, "-c", code, str(out)], env=_env(1), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads(res.stdout.strip().splitlines()[-1])) == 3


@pytest.mark.slow
def test_a_pbt_population_sharded_over_two_devices_equals_one_device(tmp_path):
    """The exploit/explore step gathers members across devices and puts them back on the chunk's layout."""
    args = [sys.executable, "-m", "pjrl_agents.cli", "tune", "--num-seeds", "4", "--pbt-every", "5",
            "--total-timesteps", "20480", "--quiet", "--no-tensorboard", "--eval-episodes", "0"]
    for devices in (2, 1):
        res = subprocess.run(args + ["--devices", str(devices), "--out", str(tmp_path / f"d{devices}")],
                             env=_env(2), cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    two, one = (json.loads((tmp_path / f"d{d}" / "summary.json").read_text()) for d in (2, 1))
    assert two["final_return_per_seed"] == one["final_return_per_seed"]
    assert two["pbt"]["final_settings"] == one["pbt"]["final_settings"]


# ---------------------------------------------------------------- two processes that fail and resume

TWO = ["--total-timesteps", "61440", "--num-seeds", "2", "--checkpoint-every", "10", "--quiet"]  # 120 updates


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start_two(tmp_path, argv) -> list:
    """Processes 0 and 1 of one run on localhost, each in its own working directory with one CPU device."""
    port, procs = _free_port(), []
    for i in range(2):
        (tmp_path / f"p{i}").mkdir(exist_ok=True)
        procs.append(subprocess.Popen([sys.executable, "-m", "pjrl_agents.cli", "train", *argv, "--coordinator",
                                       f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                                      cwd=tmp_path / f"p{i}", env=_env(1), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _finish(procs, timeout=300) -> list:
    try:
        outs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, (_, stderr) in zip(procs, outs):
        assert p.returncode == 0, stderr[-3000:]
    return outs


def _kill_after_first_checkpoint(out: Path, procs, which) -> float:
    t0 = time.time()
    while not (out / "checkpoints").is_dir() or not any(p.name.isdigit() for p in (out / "checkpoints").iterdir()):
        assert all(p.poll() is None for p in procs) and time.time() - t0 < 240, "no checkpoint appeared"
        time.sleep(0.05)
    for i in which:
        procs[i].send_signal(signal.SIGKILL)
    return time.time()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two")
    out = tmp / "whole"
    outs = _finish(_start_two(tmp, TWO + ["--out", str(out)]))
    for stdout, stderr in outs:
        assert "Gloo" not in stdout + stderr  # the library's connection lines are filtered out
    return out


@pytest.mark.slow
def test_two_processes_killed_then_resumed_equal_an_uninterrupted_run(two_process_run, tmp_path):
    out = tmp_path / "killed"
    procs = _start_two(tmp_path, TWO + ["--out", str(out)])
    _kill_after_first_checkpoint(out, procs, (0, 1))
    for p in procs:
        p.wait(timeout=60)
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    # resuming on another layout is refused before compiling, naming the one the checkpoint holds
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--resume", str(out)], env=_env(1),
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "trained over 2 devices" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    _finish(_start_two(tmp_path, ["--resume", str(out), "--quiet"]))
    resumed = json.loads((out / "summary.json").read_text())
    whole = json.loads((two_process_run / "summary.json").read_text())
    assert resumed["resumed_from_update"] > 0 and resumed["total_timesteps"] == 61440
    assert resumed["final_return_per_seed"] == whole["final_return_per_seed"]
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())[-1] == 120
    # evaluated from one process that sees one device: the two processes' shards come back whole
    res = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "eval", str(out), "--episodes", "2", "--out",
                          str(tmp_path / "eval.json")], env=_env(1), cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(json.loads((tmp_path / "eval.json").read_text())["members"][0]["greedy"]["per_seed"]["return_mean"]) == 2
    code = ("import json, sys, jax, pjrl_envs; from pjrl_agents import load_policy; "
            "p = load_policy(sys.argv[1], seed=1); "
            "_, ts = pjrl_envs.make('gymnax:CartPole-v1', num_envs=3).reset(jax.random.PRNGKey(0)); "
            "print(json.dumps(p(ts.obs).tolist()))")
    res = subprocess.run([sys.executable, "-c", code, str(out)], env=_env(1), cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0 and len(json.loads(res.stdout.strip().splitlines()[-1])) == 3, res.stderr[-3000:]


@pytest.mark.slow
def test_when_one_process_dies_the_other_stops_in_one_line_and_both_resume(two_process_run, tmp_path):
    out = tmp_path / "one"
    procs = _start_two(tmp_path, TWO + ["--out", str(out)])
    killed = _kill_after_first_checkpoint(out, procs, (1,))
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == 1 and time.time() - killed < 60
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "another process of the run died" in lines[0] and "--resume" in lines[0], err
    assert "Traceback" not in err and "Check failure" not in err
    procs[1].wait(timeout=60)
    _finish(_start_two(tmp_path, ["--resume", str(out), "--quiet"]))
    resumed = json.loads((out / "summary.json").read_text())
    whole = json.loads((two_process_run / "summary.json").read_text())
    assert resumed["final_return_per_seed"] == whole["final_return_per_seed"]


def test_a_process_that_cannot_see_the_run_directory_stops_every_process(tmp_path, monkeypatch):
    """Process 1's side of the check: process 0 published a directory that is not on storage process 1 sees."""
    from pjrl_agents.config import ConfigError
    from pjrl_agents.run import processes
    store = {"pjrl/run_dir": f"ok\n{tmp_path / 'elsewhere'}\ntoken"}

    class Client:
        def key_value_set(self, key, value):
            store[key] = value

        def blocking_key_value_get(self, key, timeout_ms):
            return store[key]

    from jax._src.distributed import global_state
    monkeypatch.setattr(global_state, "client", Client())
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    with pytest.raises(ConfigError,
                       match="process 1 cannot see the run directory .*elsewhere.*storage all hosts mount"):
        processes.shared_directory(tmp_path / "mine")
    assert store["pjrl/sees/1"] == "no"
    # and where it sees process 0's token, it takes process 0's directory
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / ".shared").write_text("token")
    assert processes.shared_directory(tmp_path / "mine") == tmp_path / "elsewhere"


# ---------------------------------------------------------------- in this process, no extra devices


def test_gradient_averaged_over_shards_is_the_whole_minibatch_gradient():
    """Four equal shards, advantages normalised over all of them, gradients pmean'd: the whole batch's gradient."""
    n = 32
    net = ActorCritic(3, (8,), "tanh", False)
    grad = jax.grad(ppo.ppo_loss, has_aux=True)

    def per_shard(batch, params, axis_name):
        g, _ = grad(params, net.apply, Categorical, batch, 0.2, 0.5, 0.01, axis_name)
        return jax.lax.pmean(g, "d")

    @jax.jit  # one compile for all of it
    def gradients(key):
        k_obs, k_act, k_net, k_adv, k_lp, k_v = jax.random.split(key, 6)
        obs = jax.random.normal(k_obs, (n, 5))
        params = net.init(k_net, obs)
        batch = ppo.Batch(obs=obs, mask=jnp.ones((n, 3), bool), action=jax.random.randint(k_act, (n,), 0, 3),
                          log_prob=jnp.log(jax.random.uniform(k_lp, (n,), minval=0.1, maxval=0.6)),
                          value=jax.random.normal(k_v, (n,)), advantage=3.0 + 2.0 * jax.random.normal(k_adv, (n,)),
                          target=jax.random.normal(k_v, (n,)) + 1.0)
        whole, _ = grad(params, net.apply, Categorical, batch, 0.2, 0.5, 0.01)
        shards = jax.tree.map(lambda x: x.reshape((4, n // 4) + x.shape[1:]), batch)
        shared_stats = jax.vmap(per_shard, in_axes=(0, None, None), axis_name="d")(shards, params, "d")
        local_stats = jax.vmap(per_shard, in_axes=(0, None, None), axis_name="d")(shards, params, None)
        return whole, shared_stats, local_stats

    whole, shared_stats, local_stats = gradients(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves(shared_stats), jax.tree.leaves(whole)):
        for row in range(4):
            np.testing.assert_allclose(a[row], b, rtol=1e-4, atol=1e-6)
    # without the shared advantage statistics the shards would not add up to it
    assert not all(np.allclose(a[0], b, rtol=1e-4, atol=1e-6)
                   for a, b in zip(jax.tree.leaves(local_stats), jax.tree.leaves(whole)))


def test_episode_metrics_over_shards_count_every_episode():
    # shard 0: episodes of return 10 and 20 end; shard 1: one of return 60; shard 2: none
    done = jnp.array([[[True, True]], [[True, False]], [[False, False]]])  # (shards, T=1, B=2)
    ret = jnp.array([[[10.0, 20.0]], [[60.0, 99.0]], [[99.0, 99.0]]])
    info = {"returned_episode": done, "episode_return": ret, "episode_length": jnp.full((3, 1, 2), 5)}
    r, length, count = jax.jit(jax.vmap(lambda i: episode_metrics(i, 0.0, 0.0, "d"), axis_name="d"))(info)
    np.testing.assert_allclose(r, [30.0] * 3)  # (10 + 20 + 60) / 3, on every shard
    np.testing.assert_allclose(count, [3.0] * 3)
    np.testing.assert_allclose(length, [5.0] * 3)


@pytest.mark.parametrize("argv, words", [
    (["--devices", "99"], ["--devices 99", "visible"]),
    (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], ["HOST:PORT"]),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"], ["--process-id 2", "0 to 1"]),
    (["--num-processes", "2", "--process-id", "0"], ["--coordinator"]),
])
def test_bad_device_and_process_flags_are_one_line(argv, words, capsys, tmp_path):
    assert cli.main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


CORES = r"""
import json, os, sys
from pjrl_agents.run import devices
from pjrl_agents.run import processes
from pjrl_agents.run import xla_cpu
from pjrl_agents.config import ConfigError
res = {"set": xla_cpu.use_cpu_cores()}
import jax
res["devices"] = len(jax.devices())
res["again"] = xla_cpu.use_cpu_cores()  # JAX has started: left alone
res["layouts"] = {n: [devices.plan(None, 4, n).layout, devices.plan(None, 4, n).num_devices]
                  for n in (1, 2, 3, 4)}
print(json.dumps(res))
"""


@pytest.mark.parametrize("setting, devices", [("3", 3), ("", None), ("0", None)])
def test_a_cpu_run_makes_its_cores_devices_and_splits_the_seeds_it_can(setting, devices):
    """`use_cpu_cores` before JAX starts: PJRL_CPU_DEVICES=N devices, else one per core; with devices left
    out, `plan` puts the runs on the most devices they divide over (one run on one). A bad count is one line."""
    env = dict(os.environ, PJRL_CPU_DEVICES=setting, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    res = subprocess.run([sys.executable, "-c", CORES], env=env, capture_output=True, text=True, timeout=300)
    if setting == "0":
        assert res.returncode != 0 and "PJRL_CPU_DEVICES=0: expected a whole number >= 1" in res.stderr
        return
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    cores = len(os.sched_getaffinity(0))
    expected = devices or cores
    assert out["devices"] == expected and out["again"] is None
    assert out["set"] == (expected if expected > 1 else None)
    for runs, (layout, used) in out["layouts"].items():
        best = max(d for d in range(1, expected + 1) if int(runs) % d == 0)
        assert (layout, used) == (("single", 1) if best == 1 else ("seeds", best)), (runs, layout, used)


def test_a_device_count_already_chosen_is_left_alone():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=3", JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("PJRL_CPU_DEVICES", None)
    res = subprocess.run([sys.executable, "-c", CORES], env=env, capture_output=True, text=True, timeout=300)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["set"] is None and out["devices"] == 3


FLAGS = r"""
import json, os
import pjrl_agents  # adds xla_cpu.CPU_FLAGS before JAX starts
from pjrl_agents.run import devices
from pjrl_agents.run import processes
from pjrl_agents.run import xla_cpu
import jax
jax.devices()
print(json.dumps({"flags": os.environ.get("XLA_FLAGS"), "user": xla_cpu.USER_XLA_FLAGS,
                  "cpu_flags": list(xla_cpu.CPU_FLAGS), "again": xla_cpu.use_cpu_flags()}))
"""


@pytest.mark.parametrize("user", [None, "--xla_cpu_enable_concurrency_optimized_scheduler=true"])
def test_importing_pjrl_agents_adds_its_xla_cpu_flags_unless_the_user_named_them(user):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("XLA_FLAGS", None)
    if user:
        env["XLA_FLAGS"] = user
    res = subprocess.run([sys.executable, "-c", FLAGS], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["user"] == user and out["again"] == []  # JAX has started: nothing more is added
    assert out["flags"] == (user or " ".join(out["cpu_flags"]))


SCHEDULER = r"""
import hashlib, json, os, subprocess, sys
import pjrl_agents
from pjrl_agents import algorithms
from pjrl_agents.run import devices, xla_cpu
runs, count, algo = int(sys.argv[1]), (None if sys.argv[2] == "-" else int(sys.argv[2])), sys.argv[3]
xla_cpu.use_cpu_cores()
plan = devices.plan(count, 4, runs, concurrent_runs=algorithms.get(algo).concurrent_runs or xla_cpu.CONCURRENT_RUNS)
import jax, jax.numpy as jnp
def probe(a, b):  # two independent chains: XLA's concurrency-optimised scheduler orders them otherwise
    x, y = a, b
    for _ in range(3):
        x, y = jnp.tanh(x @ a), jnp.tanh(y @ b)
    return x.sum() + y.sum()
text = jax.jit(probe).lower(jnp.ones((64, 64)), jnp.ones((64, 64))).compile().as_text()
child = subprocess.run([sys.executable, "-c", "from pjrl_agents.run import xla_cpu; print(xla_cpu.USER_XLA_FLAGS)"],
                       capture_output=True, text=True, env=os.environ).stdout.strip()
print(json.dumps({"devices": plan.num_devices, "on": xla_cpu.cpu_scheduler_on(), "child_user_flags": child,
                  "side_by_side": xla_cpu.cpu_kernels_side_by_side(),
                  "schedule": hashlib.sha1(text.encode()).hexdigest()}))
"""


def _run_on_two_cores(script, *args, user=None):
    """`script`'s last JSON line, run on 2 CPU devices with XLA_FLAGS as a user's shell starts it (`user`)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PJRL_CPU_DEVICES="2",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name in ("XLA_FLAGS", "PJRL_ADDED_XLA_FLAGS"):
        env.pop(name, None)
    if user:
        env["XLA_FLAGS"] = user
    res = subprocess.run([sys.executable, "-c", script, *map(str, args)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def _scheduler_run(runs, devices, user=None, algo="ppo"):
    return _run_on_two_cores(SCHEDULER, runs, devices or "-", algo, user=user)


@pytest.mark.slow
def test_a_plan_made_before_jax_starts_sets_the_cpu_scheduler_for_the_runs_a_device_holds():
    """Below `CONCURRENT_RUNS` runs a device XLA's concurrency-optimised scheduler stays off; from it on, on
    (64 seeds over 2 core devices, 32 vmapped on one), or from the algorithm's own count (DQN: 16 on one
    device, not 8 on each of 2); XLA compiles with what was chosen (a probe's schedule is that of a
    process started with the flag named); a user's setting wins; a process started from pjrl's tells
    pjrl's flag from the user's."""
    from pjrl_agents import algorithms
    from pjrl_agents.run import xla_cpu
    assert algorithms.get("ppo").concurrent_runs is None and xla_cpu.CONCURRENT_RUNS == 32  # None: the default
    assert algorithms.get("dqn").concurrent_runs == 16
    flag = xla_cpu.SCHEDULER_FLAG
    few, many, one_device = _scheduler_run(16, None), _scheduler_run(64, None), _scheduler_run(32, 1)
    assert (few["devices"], few["on"]) == (2, False) and (many["devices"], many["on"]) == (2, True)
    assert one_device["devices"] == 1 and one_device["on"] and one_device["schedule"] == many["schedule"]
    assert one_device["side_by_side"] and not few["side_by_side"]
    dqn_one, dqn_split = _scheduler_run(16, 1, algo="dqn"), _scheduler_run(16, None, algo="dqn")
    assert dqn_one["on"] and dqn_one["side_by_side"] and dqn_one["schedule"] == many["schedule"]
    assert (dqn_split["devices"], dqn_split["on"]) == (2, False)
    named_on, named_off = _scheduler_run(16, None, f"{flag}=true"), _scheduler_run(64, None, f"{flag}=false")
    assert named_on["on"] and not named_off["on"]
    assert many["schedule"] == named_on["schedule"] and few["schedule"] == named_off["schedule"] != many["schedule"]
    assert few["child_user_flags"] == many["child_user_flags"] == "None"
    assert named_on["child_user_flags"] == f"{flag}=true"


DQN_LAYOUT = r"""
import json, sys
from pjrl_agents.run import experiment, spec, xla_cpu
devices = None if sys.argv[1] == "-" else int(sys.argv[1])
xla_cpu.use_cpu_cores()  # as `pjrl train` does
built = experiment.build(spec.RunSpec(algo="dqn", num_seeds=16, devices=devices,
                                            settings={"total_timesteps": 2000, "learning_starts": 1000}))
print(json.dumps({"devices": built.plan.num_devices, "on": xla_cpu.cpu_scheduler_on(),
                  "value_in_step": built.agent.value_in_step}))
"""


@pytest.mark.parametrize("devices", [1, None])
def test_a_dqn_run_with_16_seeds_a_device_values_its_targets_beside_the_gradient(devices):
    """The experiment layer plans with the algorithm's `concurrent_runs`: 16 DQN seeds on one CPU device run
    with the concurrency-optimised scheduler and value each batch's targets in its gradient step; over 2
    devices (8 each) neither."""
    out = _run_on_two_cores(DQN_LAYOUT, devices or "-")
    one = devices == 1
    assert out == {"devices": 1 if one else 2, "on": one, "value_in_step": one}


def test_a_device_with_one_run_traces_it_unbatched_and_returns_its_run_axis():
    """`Plan.jit` vmaps the runs, except one run alone, which runs as plain `fn` (faster on a CPU)."""
    from pjrl_agents.run import devices
    seen = []

    def fn(x, scale):
        seen.append(type(x).__name__)
        return {"y": x * scale, "total": x.sum() * scale}

    one = devices.plan(1, 1, 1).jit(fn, in_axes=(0, None))(jnp.ones((1, 3)), 2.0)
    assert "BatchTracer" not in seen and one["y"].shape == (1, 3) and one["total"].shape == (1,)
    np.testing.assert_allclose(one["total"], [6.0])
    seen.clear()
    two = devices.plan(1, 1, 2).jit(fn, in_axes=(0, None))(jnp.arange(6.0).reshape(2, 3), 2.0)
    assert "BatchTracer" in seen and two["y"].shape == (2, 3)
    np.testing.assert_allclose(two["total"], [6.0, 24.0])
