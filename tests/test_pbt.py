"""Population-based training: the exploit/explore step on a hand-made population, and `pjrl tune` end to end."""
import json
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.algorithms import ppo
from pjrl_agents.config import ConfigError, stack_configs
from pjrl_agents.search import pbt


class State(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    config: Any
    target_params: Any = None


def population(n=8):
    configs = [ppo.PPOConfig(lr=float(i + 1), ent_coef=0.5, gamma=0.9) for i in range(n)]
    return State(params={"w": jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((n, 3))},
                 opt_state=jnp.arange(n, dtype=jnp.float32) + 100, env_state=jnp.arange(n) + 1000,
                 config=stack_configs(configs))


def test_the_worst_copy_the_best_and_perturb_what_they_were_told():
    state = population()
    # scores: member 5 worst, then 2; best 7, then 0 (NaN counts as worst of all: member 3)
    scores = jnp.array([9.0, 4.0, 1.0, jnp.nan, 5.0, 0.0, 6.0, 10.0])
    new, parents, multipliers = pbt.exploit_explore(state, scores, jax.random.PRNGKey(0), 0.25, ("lr",),
                                                    (0.5, 2.0), {"gamma": 1.0})
    parents = np.asarray(parents)
    # 8 x 0.25 = 2 replaced: the two lowest (3: NaN, 5: 0.0), each from the two highest (7: 10.0, 0: 9.0)
    replaced = [i for i in range(8) if parents[i] != i]
    assert replaced == [3, 5] and set(parents[replaced]) <= {0, 7}
    for i in range(8):
        p = parents[i]
        np.testing.assert_array_equal(new.params["w"][i], state.params["w"][p])  # the parent's agent
        assert new.opt_state[i] == state.opt_state[p]
        assert new.env_state[i] == state.env_state[i]  # its own envs
        assert new.config.ent_coef[i] == 0.5 and new.config.gamma[i] == pytest.approx(0.9)  # not perturbed
        if i in replaced:  # the parent's lr times 0.5 or 2
            assert float(new.config.lr[i]) / float(state.config.lr[p]) in (0.5, 2.0)
            assert float(multipliers[i, 0]) in (0.5, 2.0)
        else:
            assert new.config.lr[i] == state.config.lr[i] and multipliers[i, 0] == 1.0


def test_perturbed_settings_stay_in_their_interval():
    state = population(4)
    state = state._replace(config=state.config.replace(gamma=jnp.full(4, 0.95)))
    bounds = pbt.upper_bounds(("gamma",), ppo.RANGES)
    assert bounds == {"gamma": 1.0}
    new, parents, _ = pbt.exploit_explore(state, jnp.array([1.0, 2.0, 3.0, 4.0]), jax.random.PRNGKey(1), 0.5,
                                          ("gamma",), (2.0,), bounds)
    # members 0 and 1 replaced: 0.95 x 2 = 1.9, clipped to 1.0
    np.testing.assert_allclose(new.config.gamma, [1.0, 1.0, 0.95, 0.95])


def test_pbt_options_are_checked_before_compiling(capsys, tmp_path):
    config = ppo.PPOConfig()
    with pytest.raises(ConfigError, match="--perturb num_envs"):
        pbt.PBT(perturb=("num_envs",)).check(config, 8, ppo.RANGES)
    with pytest.raises(ConfigError, match="population of 2 replaces none"):
        pbt.PBT(fraction=0.25).check(config, 2, ppo.RANGES)
    for argv, words in ((["--fraction", "0.9"], "--fraction 0.9"), (["--factors", "0,2"], "--factors"),
                        (["--num-seeds", "1"], "population of 1"),
                        (["--population", "4"], "--population is an option of --method es"),
                        (["--method", "es", "--pbt-every", "3"], "--pbt-every is an option of --method pbt"),
                        (["--method", "es", "--perturb", "num_envs"], "--perturb num_envs")):
        assert cli.main(["tune", *argv, "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_pjrl_tune_trains_a_population_and_says_who_was_best(tmp_path, capsys):
    out = tmp_path / "pbt"
    assert cli.main(["tune", "--pbt-every", "5", "--fraction", "0.5", "--num-seeds", "4", "--total-timesteps",
                     "20480", "--quiet", "--no-tensorboard", "--out", str(out)]) == 0
    assert "best.json" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "pbt.jsonl").read_text().splitlines()]
    # 40 updates: steps at 5, 10, ..., 35 (none at the end), every member's row each time
    assert sorted({r["update"] for r in rows}) == [5, 10, 15, 20, 25, 30, 35] and len(rows) == 7 * 4
    assert all(sum(r["parent"] != r["seed"] for r in rows if r["update"] == u) == 2 for u in (5, 10))
    best = json.loads((out / "best.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert best["pbt"] is None and best["sweep"] == [] and best["settings"]["lr"] == pytest.approx(
        summary["pbt"]["best_settings"]["lr"])
    assert (out / "lineage.png").read_bytes()[:4] == b"\x89PNG"
    # best.json is a config pjrl train takes
    spec, _ = cli.parse_train(["--config", str(out / "best.json")])
    assert spec.pbt is None and spec.settings["lr"] == best["settings"]["lr"]


@pytest.mark.slow
def test_resuming_a_population_repeats_its_exploit_steps_exactly(tmp_path):
    """A run cut back to its checkpoint at update 20 (as a kill leaves it) and resumed: the same lineage and
    the same returns as the run that went straight through."""
    import shutil
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert cli.main(["tune", "--pbt-every", "5", "--num-seeds", "4", "--total-timesteps", "20480",
                     "--checkpoint-every", "20", "--quiet", "--no-tensorboard", "--eval-episodes", "0",
                     "--out", str(whole)]) == 0
    shutil.copytree(whole, cut)
    (cut / "summary.json").unlink()
    for step in (cut / "checkpoints").iterdir():
        if step.name.isdigit() and int(step.name) > 20:
            shutil.rmtree(step)
    # rows past the checkpoint are what the killed run wrote after it; resume drops them
    assert cli.main(["train", "--resume", str(cut), "--quiet"]) == 0
    a, b = (json.loads((d / "summary.json").read_text()) for d in (whole, cut))
    assert b["resumed_from_update"] == 20
    assert a["final_return_per_seed"] == b["final_return_per_seed"]
    assert a["pbt"]["final_settings"] == b["pbt"]["final_settings"]
    assert (whole / "pbt.jsonl").read_text() == (cut / "pbt.jsonl").read_text()


@pytest.mark.slow
def test_pjrl_tune_es_searches_settings_over_whole_runs(tmp_path, capsys):
    out = tmp_path / "es"
    assert cli.main(["tune", "--method", "es", "--generations", "2", "--population", "4", "--perturb", "lr,gamma",
                     "--total-timesteps", "4096", "--set", "num_steps=32", "--quiet", "--out", str(out)]) == 0
    assert "best.json" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    assert [r["generation"] for r in rows] == [0, 1]
    assert rows[1]["fitness_best_so_far"] >= rows[0]["fitness_best_so_far"]
    spec, _ = cli.parse_train(["--config", str(out / "best.json")])
    assert 0 < spec.settings["gamma"] < 1 and spec.settings["lr"] > 0 and spec.settings["num_steps"] == 32


def test_es_searches_positive_settings_in_log_space_and_fractions_in_logit_space():
    from pjrl_agents.search import evolve
    # the candidates' settings: positive ones in log space, [0, 1] ones in logit space, 0 = the default
    search = evolve.Search(evolve.EvolveSpec(population=2, total_timesteps=4096, algo="ppo", search="settings",
                                             names=["lr", "gamma"]))
    at = search.settings_of(np.array([np.log(2.0), 0.0]))
    assert at["lr"] == pytest.approx(2 * 2.5e-4) and at["gamma"] == pytest.approx(0.99)
    with pytest.raises(ConfigError, match="num_envs"):
        evolve.EvolveSpec(algo="ppo", search="settings", names=["num_envs"]).check()
