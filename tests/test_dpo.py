"""DPO: the drift worked out by hand, its traced numbers, and learning CartPole through the runner."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import algorithms, cli
from pjrl_agents.algorithms import dpo, ppo
from pjrl_agents.config import ConfigError
from pjrl_agents.run.runner import train
from pjrl_agents.run.spec import RunSpec


def drift(r, a, alpha=2.0, beta=0.6):
    r, a = jnp.asarray(r), jnp.asarray(a)
    return float(dpo.drift(r, jnp.log(r), a, alpha, beta))


def test_the_drift_by_hand():
    # ratio 1: no drift, whatever the advantage's sign
    assert drift(1.0, 1.7) == 0.0 and drift(1.0, -1.7) == 0.0
    # A = 1, r = 2, alpha = 2: x = (r - 1) A = 1; drift = 1 - 2 tanh(1 / 2) = 1 - 2 * 0.4621172 = 0.0757657
    assert drift(2.0, 1.0) == pytest.approx(1 - 2 * math.tanh(0.5), rel=1e-6)
    assert drift(2.0, 1.0) == pytest.approx(0.0757657, abs=1e-6)
    # A = -1, r = 0.5, beta = 0.6: x = log(r) A = ln 2 = 0.6931472; drift = ln 2 - 0.6 tanh(ln 2 / 0.6)
    #   = 0.6931472 - 0.6 * 0.8195 = 0.1014 (the negative branch reads the log ratio, with beta)
    assert drift(0.5, -1.0) == pytest.approx(math.log(2) - 0.6 * math.tanh(math.log(2) / 0.6), rel=1e-6)
    # moves against the advantage's sign give x < 0, where x - alpha tanh(x / alpha) < 0: relu makes them free
    assert drift(0.5, 1.0) == 0.0 and drift(2.0, -1.0) == 0.0
    # the two branches use their own scale: alpha does not touch negative advantages, beta not positive ones
    assert drift(0.5, -1.0, alpha=9.0) == drift(0.5, -1.0) and drift(2.0, 1.0, beta=9.0) == drift(2.0, 1.0)
    # the objective is r A - drift: A = 1, r = 2 -> 2 - 0.0757657
    assert float(dpo.objective(2.0, math.log(2.0), 1.0, 2.0, 0.6)) == pytest.approx(2 - 0.0757657, abs=1e-6)


def test_the_drift_has_zero_gradient_at_ratio_one():
    grad = jax.grad(lambda r, a: dpo.drift(r, jnp.log(r), a, 2.0, 0.6))
    for a in (-3.0, -0.5, 0.5, 3.0):
        assert float(grad(1.0, a)) == 0.0
    # so at ratio 1 the objective's gradient is PPO's: A
    g = jax.grad(lambda r: dpo.objective(r, jnp.log(r), 1.5, 2.0, 0.6))(1.0)
    assert float(g) == pytest.approx(1.5)


def test_dpo_is_an_algorithm_with_traced_drift_numbers(capsys):
    assert "dpo" in algorithms.names()
    config = dpo.default_config("gymnax:Pendulum-v1")
    assert config.alpha == 2.0 and config.beta == 0.6 and config.lr == ppo.default_config("gymnax:Pendulum-v1").lr
    from pjrl_agents.config import numeric_fields
    assert {"alpha", "beta"} <= set(numeric_fields(config))  # sweepable in one compile
    with pytest.raises(ConfigError, match="beta"):
        dpo.validate(config.replace(beta=0.0))
    assert cli.main(["train", "--algo", "dpo", "--alpha", "-1"]) == 2
    assert "alpha" in capsys.readouterr().err


@pytest.mark.slow
def test_dpo_balances_cartpole_with_its_alpha_swept(tmp_path):
    """PureJaxRL's CartPole settings, 500k steps, two drift scales in one compile."""
    summary = train(RunSpec(algo="dpo", settings={"total_timesteps": 500_000}, sweep=["alpha=2,4"],
                            tensorboard=False, chunks=5), out=tmp_path / "run", progress=None)
    greedy = [m["final_greedy_return_mean"] for m in summary["members"]]
    assert min(greedy) >= 475, greedy  # a random policy: 22
    # the members differ only by alpha, so their training curves differ
    from pjrl_agents.run.sinks import read_metrics
    rows = read_metrics(tmp_path / "run")
    curves = [[r["episode_return"] for r in rows if r["member"] == m] for m in (0, 1)]
    assert len(curves[0]) == len(curves[1]) > 0 and curves[0] != curves[1]
    np.testing.assert_array_equal([m["settings"]["alpha"] for m in summary["members"]], [2.0, 4.0])
