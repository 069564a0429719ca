"""`pjrl eval --render`: a GIF of a gymnax episode, an HTML page of a brax one, early one-line errors."""
import base64
import json
import re
import time
import zlib

import jax
import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.run import evaluate, experiment, runner
from pjrl_agents.run.spec import RunSpec
from pjrl_agents.trained import render
from tests import shared_run

pytestmark = pytest.mark.xdist_group("render")


@pytest.fixture
def cartpole(finished_run):
    """The shared finished CartPole run (tests/shared_run.py), whose env cuts episodes at 50 steps."""
    return finished_run


@pytest.mark.slow
def test_gif_of_one_deterministic_episode(finished_run_copy, tmp_path, capsys):
    gif = tmp_path / "sub" / "episode.gif"
    # a copy: the evaluation writes RUN/eval.json
    assert cli.main(["eval", str(finished_run_copy), "--episodes", "2", "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "greedy" in out and "stochastic" in out  # the evaluation still reports
    steps = int(re.search(r"rendered one deterministic episode \((\d+) steps\)", out).group(1))
    assert gif.read_bytes()[:4] == b"GIF8"
    from PIL import Image
    with Image.open(gif) as im:
        assert im.n_frames == steps > 1
        first = np.asarray(im.convert("RGB"))
        im.seek(im.n_frames - 1)
        last = np.asarray(im.convert("RGB"))
    assert first.shape[0] > 100 and not np.array_equal(first, last)  # a drawing, and the cart-pole moved


def test_rollout_is_one_whole_episode(cartpole):
    ex, state = experiment.load(cartpole)
    row = ex.row(state)
    states, n = render.episode_states(ex.agent, row.params, row.env_state, jax.random.PRNGKey(0), 500)
    assert 1 < n <= shared_run.MAX_EPISODE_STEPS  # cut where the episode ended, by the run's own time limit
    # env 0's states before each step, through the wrappers' states to gymnax's own
    theta = np.asarray(states.inner.theta)
    assert theta.shape == (n, 1)
    # the pole was still up in every frame drawn; the step from the last one ended the episode
    assert (np.abs(theta) <= 12 * 2 * np.pi / 360).all()
    lengths = np.asarray(states.episode_length)[:, 0]
    np.testing.assert_array_equal(lengths, np.arange(n))  # one episode, no reset inside


@pytest.mark.parametrize("path", ["episode.mp4", "episode.html", "episode"])
def test_bad_extension_is_a_one_line_error_before_evaluating(cartpole, tmp_path, capsys, monkeypatch, path):
    def never(*args, **kwargs):
        raise AssertionError("evaluated or rolled out before refusing --render")
    monkeypatch.setattr(evaluate, "evaluate_runs", never)
    monkeypatch.setattr(render, "episode_states", never)
    assert cli.main(["eval", str(cartpole), "--render", str(tmp_path / path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pjrl: error: cannot draw gymnax:CartPole-v1"), lines
    assert ".gif" in lines[0]
    assert not (tmp_path / path).exists()


@pytest.mark.slow
def test_brax_html_holds_the_system_and_the_episode(tmp_path):
    pytest.importorskip("brax")
    t0 = time.perf_counter()
    out = tmp_path / "pendulum"
    settings = {"total_timesteps": 512, "num_envs": 4, "num_steps": 32, "num_minibatches": 2, "update_epochs": 1}
    runner.train(RunSpec(env="brax:inverted_pendulum", settings=settings, tensorboard=False), out=out, progress=None)
    ex, state = experiment.load(out)
    row = ex.row(state)
    page = tmp_path / "episode.html"
    steps = render.render(ex.agent, row.params, row.env_state, page)
    text = page.read_text()
    system = json.loads(zlib.decompress(base64.b64decode(re.search(r'var system = "([^"]+)"', text).group(1))))
    sys_ = ex.env.unwrapped.brax_env.sys
    assert system["link_names"] == list(sys_.link_names) == ["cart", "pole"]
    assert {"cart", "pole"} <= set(system["geoms"])
    poses = system["states"]["x"]
    assert len(poses) == steps > 1 and steps < 1000  # one episode, ended when the pole fell
    assert poses[0]["rot"] != poses[-1]["rot"]
    print(f"brax render test: {time.perf_counter() - t0:.1f} s")
