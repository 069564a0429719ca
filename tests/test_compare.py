"""`pjrl compare` and `pjrl plot` on run directories written by hand: grouping, normalisation, intervals,
labels, smoothing, the bands and what is refused."""
import json

import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.analysis import compare, plot


def fake_run(path, env="gymnax:CartPole-v1", algo="ppo", per_seed=(100.0, 200.0), settings=None, members=None,
             evaluation=None, curve=None):
    """A run directory as pjrl train leaves it, with the numbers given."""
    path.mkdir(parents=True)
    settings = {"lr": 0.00025, "num_envs": 4, **(settings or {})}
    (path / "run.json").write_text(json.dumps({"env": env, "algo": algo, "settings": settings, "num_seeds":
                                               len(per_seed)}))
    summary = {"env": env, "algo": algo, "final_return_per_seed": [x / 2 for x in per_seed],
               "final_greedy_return_per_seed": list(per_seed), "greedy_episodes": 10}
    if members:
        summary["members"] = [{"settings": m, "final_return_per_seed": [x / 2 for x in s],
                               "final_greedy_return_per_seed": list(s)} for m, s in members]
    (path / "summary.json").write_text(json.dumps(summary))
    if evaluation:
        (path / "eval.json").write_text(json.dumps(evaluation))
    rows = []
    for seed, values in enumerate(curve if curve is not None else [[1.0, 2.0]] * len(per_seed)):
        for update, value in enumerate(values, 1):
            rows.append({"member": 0, "seed": seed, "update": update, "step": update * 1000,
                         "episode_return": None if value is None else value, "loss": 1.0})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sorted(
        rows, key=lambda r: (r["update"], r["seed"]))))
    return path


def test_one_env_groups_hold_the_raw_returns_and_the_gap_below_cartpoles_target(tmp_path):
    run = fake_run(tmp_path / "a", per_seed=(100.0, 200.0, 300.0, 400.0, 500.0))
    (group,) = compare.compare([run], reps=500)
    assert group.name == "a" and group.envs == ["gymnax:CartPole-v1"] and not group.normalised
    np.testing.assert_array_equal(group.matrix[:, 0], [100, 200, 300, 400, 500])
    assert group.estimates["mean"][0] == pytest.approx(300.0)
    assert group.estimates["iqm"][0] == pytest.approx(300.0)  # trim_mean cuts 1 of 5 from each end: 200,300,400
    # normalised by (22.5, 500): (x - 22.5) / 477.5, clipped at 1;
    # gap = 1 - mean = 1 - (77.5+177.5+277.5+377.5+477.5)/5/477.5
    expected_gap = 1 - np.mean([(x - 22.5) / 477.5 for x in (100, 200, 300, 400, 500)])
    assert group.estimates["optimality_gap"][0] == pytest.approx(expected_gap)
    low, high = group.estimates["mean"][1:]
    assert 100 <= low < 300 < high <= 500


def test_the_greedy_score_comes_from_eval_json_before_summary_json(tmp_path):
    evaluation = {"env": "gymnax:CartPole-v1", "algo": "ppo", "protocol": {"policies": ["greedy", "stochastic"],
                                                                            "episodes_per_seed": 12},
                  "members": [{"member": 0, "settings": {},
                               "greedy": {"per_seed": {"return_mean": [7.0, 9.0]}},
                               "stochastic": {"per_seed": {"return_mean": [3.0, 5.0]}}}]}
    run = fake_run(tmp_path / "a", evaluation=evaluation)
    greedy, = compare.read_entries(run, "greedy")
    assert greedy.scores.tolist() == [7.0, 9.0] and "eval.json" in greedy.source
    assert compare.read_entries(run, "stochastic")[0].scores.tolist() == [3.0, 5.0]
    train, = compare.read_entries(run, "train")
    assert train.scores.tolist() == [50.0, 100.0] and "training" in train.source
    (run / "eval.json").unlink()
    assert compare.read_entries(run, "greedy")[0].scores.tolist() == [100.0, 200.0]
    with pytest.raises(compare.ConfigError, match="pjrl eval"):
        compare.read_entries(run, "stochastic")


def test_grouping_by_member_run_and_algo(tmp_path):
    a = fake_run(tmp_path / "a", members=[({"lr": 0.001}, (1.0, 2.0)), ({"lr": 0.0003}, (3.0, 4.0))])
    b = fake_run(tmp_path / "b", algo="dqn", per_seed=(5.0, 6.0))
    by_member = compare.compare([a, b], by="member", reps=10)
    assert [g.name for g in by_member] == ["a lr=0.001", "a lr=0.0003", "b"]
    assert [g.estimates["mean"][0] for g in by_member] == [1.5, 3.5, 5.5]
    by_run = compare.compare([a, b], by="run", reps=10)
    assert [(g.name, g.matrix[:, 0].tolist()) for g in by_run] == [("a", [1, 2, 3, 4]), ("b", [5, 6])]
    by_algo = compare.compare([a, b], by="algo", reps=10)
    assert [g.name for g in by_algo] == ["ppo", "dqn"]


def test_a_group_over_several_envs_is_normalised_by_the_reference_scores(tmp_path):
    a = fake_run(tmp_path / "a", per_seed=(261.25, 500.0))  # (x - 22.5) / 477.5: 0.5, 1.0
    b = fake_run(tmp_path / "b", env="gymnax:Acrobot-v1", per_seed=(-300.0, -100.0))
    with pytest.raises(compare.ConfigError, match="Acrobot-v1 has no reference score"):
        compare.compare([a, b], by="algo")
    refs = compare.parse_references(["gymnax:Acrobot-v1=-500,-100"])  # -300 -> 0.5, -100 -> 1.0
    (group,) = compare.compare([a, b], by="algo", references=refs, reps=200)
    assert group.normalised and group.envs == ["gymnax:CartPole-v1", "gymnax:Acrobot-v1"]
    np.testing.assert_allclose(group.scaled, [[0.5, 0.5], [1.0, 1.0]])
    assert group.estimates["mean"][0] == pytest.approx(0.75)
    assert group.estimates["optimality_gap"][0] == pytest.approx(0.25)
    # stratified: each env's two seeds are resampled apart, so a resample's mean is one of 0.5, 0.625, 0.75, ...
    assert group.estimates["mean"][1] >= 0.5 and group.estimates["mean"][2] <= 1.0
    text = compare.table([group], markdown=True)
    assert text.splitlines()[0].startswith("| group | envs | seeds | mean [95% CI]")
    assert "(normalised)" in text and "0.750 [" in text


def test_what_compare_refuses(tmp_path, capsys):
    a = fake_run(tmp_path / "a", per_seed=(1.0, 2.0))
    b = fake_run(tmp_path / "b", env="gymnax:Catch-bsuite", per_seed=(1.0, 2.0, 3.0))
    with pytest.raises(compare.ConfigError, match="2 on gymnax:CartPole-v1, 3 on gymnax:Catch-bsuite"):
        compare.compare([a, b], by="algo")
    for argv, words in ((["compare", str(tmp_path / "none")], "no summary.json"),
                        (["compare", str(a), "--reference", "x=1"], "ENV=RANDOM,TARGET"),
                        (["compare", str(a), "--confidence", "1.5"], "--confidence"),
                        (["compare", str(a), "--plot", str(tmp_path / "p.xyz")], ".png")):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err, err
    nan = fake_run(tmp_path / "nan", per_seed=(1.0, float("nan")))
    with pytest.raises(compare.ConfigError, match="no score"):
        compare.compare([nan])


def test_compare_prints_a_table_and_draws(tmp_path, capsys):
    a = fake_run(tmp_path / "a", per_seed=(100.0, 200.0, 300.0))
    b = fake_run(tmp_path / "b", per_seed=(400.0, 450.0, 500.0), settings={"lr": 0.001})
    png = tmp_path / "cmp.png"
    assert cli.main(["compare", str(a), str(b), "--reps", "300", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "200.0 [" in out and "450.0 [" in out and "optimality gap" in out and "95% stratified-bootstrap" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- plot


def test_smoothing_is_tensorboards_debiased_ema():
    x = np.array([[1.0, np.nan, 3.0, 5.0]])
    # weight 0.5: debiased EMA over the finite values 1, 3, 5:
    # 1 -> 1; 3 -> (0.5*0.5*1 + 0.5*3) / (1 - 0.25) = (0.25 + 1.5) / 0.75 = 2.3333
    # 5 -> (0.5*(0.25+1.5) + 2.5) / (1 - 0.125) = 3.375 / 0.875 = 3.857142...
    np.testing.assert_allclose(plot.smooth(x, 0.5), [[1.0, np.nan, 7 / 3, 27 / 7]])
    np.testing.assert_array_equal(plot.smooth(x, 0.0), x)


def test_band_is_the_iqm_over_seeds_with_a_bootstrap_interval():
    values = np.array([[0.0, 10.0], [1.0, 10.0], [2.0, 10.0], [100.0, 10.0]])
    centre, low, high = plot.band(values, "iqm", reps=400)
    np.testing.assert_allclose(centre, [1.5, 10.0])  # trim_mean cuts 1 of 4 at each end: (1 + 2) / 2
    assert low[1] == high[1] == 10.0 and low[0] <= 1.5 <= high[0]
    centre, low, high = plot.band(values[:1], "mean")
    assert centre.tolist() == low.tolist() == high.tolist() == [0.0, 10.0]


def test_step_ticks_read_as_people_write_them():
    assert [plot.step_formatter(v) for v in (0, 500, 2e4, 5e5, 1e6, 2.5e6, 1e9)] == \
        ["0", "500", "20k", "500k", "1M", "2.5M", "1B"]


def test_labels_name_what_differs(tmp_path):
    a = fake_run(tmp_path / "a")
    b = fake_run(tmp_path / "b", settings={"lr": 0.001}, per_seed=(1.0,))
    c = fake_run(tmp_path / "c", algo="dqn", settings={"buffer_size": 1000, "lr": 0.1})
    found = [curve for run in (a, b, c) for curve in plot.curves(run, "episode_return")]
    title, names = plot.labels(found)
    assert title == "gymnax:CartPole-v1"
    assert names == ["ppo lr=0.00025 (2 seeds)", "ppo lr=0.001 (1 seed)", "dqn (2 seeds)"]
    title, names = plot.labels(found[:1])
    assert title == "PPO on gymnax:CartPole-v1" and names == ["(2 seeds)"]


def test_plot_draws_nothing_before_every_seed_has_an_episode(tmp_path, monkeypatch):
    run = fake_run(tmp_path / "a", curve=[[None, None, 5.0, 6.0], [None, 4.0, 5.0, 7.0]])
    drawn = {}
    import matplotlib.axes
    original = matplotlib.axes.Axes.plot

    def spy(self, x, y, *args, **kwargs):
        drawn["x"] = list(x)
        return original(self, x, y, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    png = tmp_path / "c.png"
    plot.plot([str(run)], str(png), smoothing=0)
    assert drawn["x"] == [3000.0, 4000.0]  # update 2 has one seed's episode only
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="--smooth"):
        plot.plot([str(run)], str(png), smoothing=1.0)
