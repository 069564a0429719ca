"""LPO and pjrl evolve: the learned drift's guarantees by hand, a search that resumes exactly, and training
with the objective it found."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.algorithms import lpo
from pjrl_agents.config import ConfigError
from pjrl_agents.search import evolve


def test_every_drift_is_zero_with_zero_gradient_at_ratio_one():
    for seed in range(5):  # any theta: the (r - 1)^2 factor guarantees it
        theta = jax.random.normal(jax.random.PRNGKey(seed), (lpo.NUM_PARAMS,))
        for a in (-2.0, 0.3, 4.0):
            d = lambda r: lpo.drift(theta, r, jnp.log(r), a)
            assert float(d(1.0)) == 0.0 and float(jax.grad(d)(1.0)) == 0.0
            assert float(d(1.7)) >= 0.0 and float(d(0.4)) >= 0.0
            # so the objective's gradient at ratio 1 is PPO's: the advantage
            assert float(jax.grad(lambda r: lpo.objective(theta, r, jnp.log(r), a))(1.0)) == pytest.approx(a)


def test_the_initial_drift_is_the_quadratic_penalty():
    theta = lpo.initial_theta()
    # hidden layer zero, output bias softplus^-1(1): drift = (r - 1)^2 * 1; r = 1.5 -> 0.25, r = 0.2 -> 0.64
    for r, expected in ((1.5, 0.25), (0.2, 0.64)):
        assert float(lpo.drift(jnp.asarray(theta), r, math.log(r), 0.7)) == pytest.approx(expected, rel=1e-5)
    assert theta.shape == (lpo.NUM_PARAMS,) == (5 * 16 + 16 + 16 + 1,)


@pytest.mark.slow
def test_a_search_resumed_after_a_kill_repeats_the_uninterrupted_generations(tmp_path):
    spec = dict(population=4, total_timesteps=4096, settings={"num_steps": 32})
    whole = evolve.evolve(evolve.EvolveSpec(generations=3, **spec), tmp_path / "whole", progress=None)
    # what a kill during generation 2 of 3 leaves: the settings, and the state and rows of generation 1
    evolve.evolve(evolve.EvolveSpec(generations=1, **spec), tmp_path / "cut", progress=None)
    cut = tmp_path / "cut"
    settings = json.loads((cut / "evolve.json").read_text())
    (cut / "evolve.json").write_text(json.dumps({**settings, "generations": 3}))
    with open(cut / "generations.jsonl", "a") as f:
        f.write('{"generation": 1, "fitness_mean": 0.0, "fitnes')  # a row cut off mid-write
    evolve.evolve(None, cut, resume=True, progress=None)
    strip = lambda path: [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                          for line in path.read_text().splitlines()]
    assert strip(cut / "generations.jsonl") == strip(tmp_path / "whole" / "generations.jsonl")
    np.testing.assert_array_equal(np.load(cut / "best_objective.npy"),
                                  np.load(tmp_path / "whole" / "best_objective.npy"))
    assert whole["generation"] == 2
    best = [r["fitness_best_so_far"] for r in strip(tmp_path / "whole" / "generations.jsonl")]
    assert best == sorted(best)  # best so far never falls


@pytest.mark.slow
def test_train_with_the_objective_a_search_found(tmp_path):
    evolve.evolve(evolve.EvolveSpec(population=2, generations=1, total_timesteps=2048), tmp_path / "s", progress=None)
    out = tmp_path / "run"
    assert cli.main(["train", "--algo", "lpo", "--objective", str(tmp_path / "s"), "--env", "gymnax:Acrobot-v1",
                     "--total-timesteps", "2048", "--quiet", "--no-tensorboard", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["settings"]["objective"] == str(tmp_path / "s")


def test_an_objective_that_is_not_a_search_and_an_odd_population_are_refused(tmp_path, capsys):
    assert cli.main(["train", "--algo", "lpo", "--objective", str(tmp_path / "nothing"), "--out",
                     str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--objective" in err and "pjrl evolve" in err
    with pytest.raises(ConfigError, match="even"):
        evolve.EvolveSpec(population=3).check()
