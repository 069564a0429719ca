"""`pjrl eval --render`: a GIF of a gymnax episode, an HTML page of a brax one, early one-line errors."""
import base64
import json
import re
import sys
import time
import zlib

import jax
import numpy as np
import pytest

from pjrl_agents import cli, evaluate, render, runner
from pjrl_agents.common import ConfigError
from pjrl_envs import MissingLibraryError

pytestmark = pytest.mark.xdist_group("render")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """A tiny CartPole run: its deterministic policy keeps the pole up for a few dozen steps."""
    out = tmp_path_factory.mktemp("render") / "cartpole"
    runner.train("gymnax:CartPole-v1", overrides={"total_timesteps": 2048}, out=out, tensorboard=False,
                 progress=None)
    return out


def test_gif_of_one_deterministic_episode(cartpole, tmp_path, capsys):
    gif = tmp_path / "sub" / "episode.gif"
    assert cli.main(["eval", str(cartpole), "--episodes", "2", "--render", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "deterministic" in out  # the evaluation still reports
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
    run, state = runner.load(cartpole)
    params = jax.tree.map(lambda x: x[0], state.params)
    env_state = jax.tree.map(lambda x: x[0], state.env_state)
    frames, returns = render.rollout("gymnax", run.agent, params, env_state, jax.random.PRNGKey(0), 500)
    n = len(frames)
    assert 1 < n < 500  # cut where the episode ended, before the time limit
    np.testing.assert_allclose(returns, np.arange(1, n + 1))  # CartPole pays 1 a step: one episode, no reset
    assert type(frames[0]).__name__ == "EnvState" and np.shape(frames[0].theta) == ()  # env 0's gymnax state
    # the pole was still up in every frame drawn; the step from the last one ended the episode
    assert all(abs(float(f.theta)) <= 12 * 2 * np.pi / 360 for f in frames)


@pytest.mark.parametrize("path", ["episode.mp4", "episode.html", "episode"])
def test_bad_extension_is_a_one_line_error_before_evaluating(cartpole, tmp_path, capsys, monkeypatch, path):
    def never(*args, **kwargs):
        raise AssertionError("evaluated or rolled out before refusing --render")
    monkeypatch.setattr(evaluate, "evaluate_run", never)
    monkeypatch.setattr(render, "rollout", never)
    assert cli.main(["eval", str(cartpole), "--render", str(tmp_path / path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pjrl: error: --render")
    assert "brax envs to .html" in lines[0] and "gymnax envs to .gif" in lines[0]
    assert not (tmp_path / path).exists()


def test_check_names_what_can_render():
    render.check("brax:ant", "a.html")
    render.check("gymnax:Breakout-MinAtar", "out/a.GIF")
    for env, path in [("pgx:tic_tac_toe", "a.gif"), ("jumanji:Game2048-v1", "a.html"), ("envpool:Pong-v5", "a.gif"),
                      ("brax:ant", "a.gif"), ("gymnax:CartPole-v1", "a.html")]:
        with pytest.raises(ConfigError, match=r"rendering writes brax envs to \.html and gymnax envs to \.gif"):
            render.check(env, path)
    with pytest.raises(ConfigError, match="gymnax cannot draw Reacher-misc; it draws .*CartPole-v1"):
        render.check("gymnax:Reacher-misc", "a.gif")


def test_classic_control_without_pygame_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pygame", None)  # makes `import pygame` fail
    with pytest.raises(MissingLibraryError, match="needs pygame: pip install"):
        render.check("gymnax:CartPole-v1", "a.gif")
    render.check("gymnax:Breakout-MinAtar", "a.gif")  # drawn by matplotlib alone


def test_brax_html_holds_the_system_and_the_episode(tmp_path):
    pytest.importorskip("brax")
    t0 = time.perf_counter()
    out = tmp_path / "pendulum"
    runner.train("brax:inverted_pendulum", overrides={"total_timesteps": 512, "num_envs": 4, "num_steps": 32,
                                                       "num_minibatches": 2, "update_epochs": 1},
                 out=out, tensorboard=False, progress=None)
    run, state = runner.load(out)
    page = tmp_path / "episode.html"
    steps = render.render_run(run, state, page)
    text = page.read_text()
    system = json.loads(zlib.decompress(base64.b64decode(re.search(r'var system = "([^"]+)"', text).group(1))))
    sys_ = run.agent.env.unwrapped.brax_env.sys
    assert system["link_names"] == list(sys_.link_names) == ["cart", "pole"]
    assert {"cart", "pole"} <= set(system["geoms"])
    poses = system["states"]["x"]
    assert len(poses) == steps > 1 and steps < 1000  # one episode, ended when the pole fell
    assert poses[0]["rot"] != poses[-1]["rot"]
    print(f"brax render test: {time.perf_counter() - t0:.1f} s")
