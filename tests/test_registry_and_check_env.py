"""The registry's names and errors, and check_env on broken envs (conformance is tests/test_conformance.py)."""
import subprocess
import sys

import jax.numpy as jnp
import pytest

import pjrl_envs
from pjrl_envs.testing import EnvCheckError, check_env
from pjrl_envs.wrappers import VecEnvWrapper
from tests.envs import CounterEnv


def test_list_envs_has_every_gymnax_env():
    names = pjrl_envs.list_envs("gymnax")
    import gymnax
    assert names == [f"gymnax:{n}" for n in gymnax.registered_envs]
    assert "gymnax:CartPole-v1" in pjrl_envs.list_envs()


def test_unknown_name_suggests_the_closest():
    with pytest.raises(pjrl_envs.UnknownEnvError, match="gymnax:CartPole-v1"):
        pjrl_envs.make("gymnax:CartPol-v1")
    with pytest.raises(pjrl_envs.UnknownEnvError, match="gymnax:"):
        pjrl_envs.make("gymnx:CartPole-v1")
    with pytest.raises(pjrl_envs.UnknownEnvError, match="prefix"):
        pjrl_envs.make("CartPole-v1")


def test_check_options_is_one_line_listing_the_allowed_ones():
    pjrl_envs.check_options("lib:Env-v0", {"b": 1}, ["b", "a"])
    with pytest.raises(pjrl_envs.OptionError, match=r"^lib:Env-v0 has no option c, d; allowed: b, a$"):
        pjrl_envs.check_options("lib:Env-v0", {"d": 1, "c": 2, "a": 3}, ["b", "a"])
    assert issubclass(pjrl_envs.OptionError, TypeError) and issubclass(pjrl_envs.OptionError, ValueError)


def test_bad_adapter_option_names_the_allowed_ones():
    with pytest.raises(pjrl_envs.OptionError, match="max_steps_in_episode"):
        pjrl_envs.make("gymnax:CartPole-v1", max_steps=3)
    env = pjrl_envs.make("gymnax:CartPole-v1", num_envs=2, max_steps_in_episode=7)
    assert env.env.params.max_steps_in_episode == 7


def test_register_in_process():
    pjrl_envs.register("counter", lambda env_id, num_envs, **kw: CounterEnv(int(env_id)).to_vec(num_envs),
                       lambda: ["3", "5"])
    env = pjrl_envs.make("counter:5", num_envs=2)
    assert env.num_envs == 2 and env.env.length == 5
    assert "counter:3" in pjrl_envs.list_envs("counter")
    with pytest.raises(pjrl_envs.UnknownEnvError, match="counter:5"):
        pjrl_envs.make("counter:55")


def test_terminated_and_truncated_are_exclusive_in_gymnax():
    # CartPole with a 1-step limit: the limit and a fall can coincide only as terminated
    report = check_env(pjrl_envs.make("gymnax:CartPole-v1", num_envs=8, max_steps_in_episode=1), num_steps=20)
    assert report["truncated"] > 0


class _FloatReward(CounterEnv):
    def step(self, state, action, key):
        state, ts = super().step(state, action, key)
        return state, ts._replace(reward=ts.reward.astype(jnp.float16))


class _IntTerminated(CounterEnv):
    def step(self, state, action, key):
        state, ts = super().step(state, action, key)
        return state, ts._replace(terminated=ts.terminated.astype(jnp.int32))


class _WrongObsDtype(CounterEnv):
    def step(self, state, action, key):
        state, ts = super().step(state, action, key)
        return state, ts._replace(obs=ts.obs.astype(jnp.int32), final_obs=ts.final_obs.astype(jnp.int32))


class _StaleFinalObs(VecEnvWrapper):
    def step(self, state, action, key):
        state, ts = self.env.step(state, action, key)
        return state, ts._replace(final_obs=ts.final_obs + 1.0)


@pytest.mark.parametrize("env, needle", [
    (_FloatReward(), "reward dtype float16"),
    (_IntTerminated(), "terminated dtype int32"),
    (_WrongObsDtype(), "obs: dtype int32"),
    (_StaleFinalObs(CounterEnv().to_vec(2)), "final_obs differs from obs"),
])
def test_check_env_catches_broken_envs(env, needle):
    with pytest.raises(EnvCheckError) as info:
        check_env(env, num_steps=10)
    assert any(needle in p for p in info.value.problems), info.value.problems


def test_check_env_passes_on_hand_made_env():
    assert check_env(CounterEnv(), num_steps=10)["terminated"] > 0


def test_cli_envs_and_unknown_env_without_traceback():
    out = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "envs", "--library", "gymnax"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "gymnax:CartPole-v1" in out.stdout.splitlines()
    bad = subprocess.run([sys.executable, "-m", "pjrl_agents.cli", "train", "--env", "gymnax:CartPol-v1"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert "gymnax:CartPole-v1" in bad.stderr and "Traceback" not in bad.stderr


def test_missing_library_names_the_package_to_install(monkeypatch):
    with pytest.raises(pjrl_envs.MissingLibraryError, match=r"^no_such_lib is not installed: pip install 'nsl==1\.0'$"):
        pjrl_envs.require("no_such_lib.sub", "nsl==1.0")
    monkeypatch.setitem(sys.modules, "brax", None)  # as if brax were not installed
    monkeypatch.setitem(sys.modules, "brax.envs", None)
    with pytest.raises(pjrl_envs.MissingLibraryError, match=r"brax is not installed: pip install 'brax==0\.14\.2'"):
        pjrl_envs.make("brax:ant")


def test_importing_pjrl_envs_imports_no_env_library():
    code = ("import sys, pjrl_envs; "
            "print(sorted(m for m in ('gymnax', 'brax', 'jumanji', 'pgx', 'envpool', 'pygame') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_library_chatter_never_reaches_stdout():
    pytest.importorskip("brax")  # mujoco prints "Failed to import warp" when brax imports it
    code = 'import pjrl_envs; print("\\n".join(pjrl_envs.list_envs("brax")))'
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines and all(line.startswith("brax:") for line in lines), out.stdout


def test_cli_missing_library_is_one_line():
    code = ("import sys; sys.modules['pgx'] = None; from pjrl_agents import cli; "
            "sys.exit(cli.main(['train', '--env', 'pgx:tic_tac_toe']))")
    bad = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == "pjrl: error: pgx is not installed: pip install 'pgx==2.6.0'"
