"""The command line's flags are generated from dataclass fields, and every run option `pjrl tune --method es`
and `pjrl evolve` are given either applies (through the same builder as `pjrl train`) or is refused in one
line. Nothing here trains: searches are captured before they run, and built without compiling."""
from __future__ import annotations

import dataclasses
import json
import types

import numpy as np
import pytest

from pjrl_agents import cli
from pjrl_agents.cli import compare as compare_command
from pjrl_agents.cli import eval as eval_command
from pjrl_agents.cli import flags
from pjrl_agents.cli import plot as plot_command
from pjrl_agents.cli import train as train_command
from pjrl_agents.run import evaluate
from pjrl_agents.run.spec import RunSpec, WandbOptions
from pjrl_agents.search import evolve
from pjrl_agents.search.pbt import PBT


def _help(capsys, *argv) -> str:
    assert cli.main([*argv, "--help"]) == 0
    return " ".join(capsys.readouterr().out.split())


def _one_line_error(capsys, argv, *words) -> None:
    assert cli.main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("pjrl: error:") and "Traceback" not in err, err
    assert all(w in err for w in words), err


@pytest.fixture
def searches(monkeypatch):
    """Every search `pjrl tune --method es` or `pjrl evolve` would run, as (spec, out, resume), none run."""
    calls = []

    def captured(spec, out, resume=False, progress=print):
        calls.append((spec, str(out), resume))
        return {"generation": 0, "out": str(out), "best_settings": {"lr": 1e-3}, "config": f"{out}/best.json"}

    monkeypatch.setattr(evolve, "evolve", captured)
    return calls


# ---------------------------------------------------------------- generated flags


def test_every_field_of_every_options_dataclass_is_a_flag_with_its_help(capsys):
    def flags_of(cls, rename=None, where=None):
        return [flags.flag_for(cls, f.name, rename) for f in flags.flagged(cls, where)
                if not f.metadata.get("positional")]

    train = _help(capsys, "train")
    for name in flags_of(RunSpec) + flags_of(WandbOptions, flags._prefixed(WandbOptions, "wandb")):
        assert name in train, name
    assert "--pbt" not in train.replace("--pbt-", "")  # RunSpec.pbt's flags are tune's
    tune = _help(capsys, "tune")
    for name in flags_of(RunSpec) + flags_of(PBT, train_command.PBT_FLAGS) + ["--method", "--es-lr"]:
        assert name in tune, name
    assert "--lr FLOAT Adam learning rate" in tune  # the algorithm's settings, as train shows them
    for command, cls in (("eval", eval_command.EvalOptions), ("plot", plot_command.PlotOptions),
                         ("compare", compare_command.CompareOptions), ("evolve", evolve.EvolveSpec)):
        text = _help(capsys, command)
        docs = flags.field_docs(cls)
        for f in flags.flagged(cls):
            assert (f.name if f.metadata.get("positional") else flags.flag_for(cls, f.name)) in text, (command, f.name)
            assert docs[f.name].split(";")[0][:40] in text, (command, f.name)


def test_the_strategy_defaults_live_once_in_evolve_spec(capsys):
    assert (evolve.EvolveSpec().sigma, evolve.EvolveSpec(search="settings").sigma) == (0.05, 0.3)
    assert "--sigma FLOAT the strategy's sampling std" in _help(capsys, "evolve")
    evolve_help, tune_help = _help(capsys, "evolve"), _help(capsys, "tune")
    assert "(default: 0.05)" in evolve_help.split("--sigma FLOAT the")[1][:200]
    assert "(default: 0.3)" in tune_help.split("--sigma FLOAT the")[1][:200]
    spec = evolve.EvolveSpec(search="settings", names=["lr"])
    assert evolve.EvolveSpec(**dataclasses.asdict(spec)) == spec  # evolve.json holds them resolved


@dataclasses.dataclass
class Toy:
    """A dataclass standing for any whose fields become flags."""

    steps: int = 1000
    """how many"""
    rate: float = 0.5
    """how fast"""
    sizes: tuple = (64, 64)
    """widths"""
    factors: tuple = (0.8, 1.25)
    """multipliers"""
    fast: bool = False
    """go fast"""
    options: dict = dataclasses.field(default_factory=dict, metadata={"flag": "option", "metavar": "NAME=VALUE"})
    """options"""
    hidden: str = dataclasses.field(default="x", metadata={"flag": False})
    """no flag"""
    path: str | None = None
    """a path"""


def test_a_field_is_read_as_its_default_says_and_unset_flags_are_absent():
    p = flags.Parser(prog="toy")
    flags.add_fields(p, Toy)
    args = p.parse_args(["--steps", "5e6", "--sizes", "32,16", "--factors", "1,2", "--fast", "--option", "a=1",
                         "--option", "b-c=x", "--path", "12"])
    assert flags.read_fields(args, Toy) == {"steps": 5_000_000, "sizes": (32, 16), "factors": (1.0, 2.0),
                                            "fast": True, "options": [("a", "1"), ("b_c", "x")], "path": "12"}
    assert flags.read_fields(p.parse_args([]), Toy) == {}
    with pytest.raises(SystemExit):
        p.parse_args(["--hidden", "y"])


# ---------------------------------------------------------------- tune --method es: applied or refused


def test_es_applies_env_options_to_the_env_it_builds(searches, tmp_path):
    argv = ["tune", "--method", "es", "--perturb", "lr", "--total-timesteps", "4096", "--set", "num_steps=32",
            "--env-option", "max_steps_in_episode=50", "--devices", "1", "--seed", "3", "--out", str(tmp_path / "es")]
    assert cli.main(argv) == 0
    (spec, out, resume), = searches
    assert out == str(tmp_path / "es") and not resume
    assert spec.env_options == {"max_steps_in_episode": 50} and spec.devices == 1 and spec.seed == 3
    assert (spec.search, spec.names, spec.total_timesteps, spec.settings) == ("settings", ["lr"], 4096,
                                                                              {"num_steps": 32})
    search = evolve.Search(spec)  # built as pjrl train builds a run: nothing compiles
    assert search.env.max_episode_steps == 50
    out_dir = tmp_path / "best"
    out_dir.mkdir()
    evolve._write_best_settings(out_dir, search, np.zeros(1))
    assert json.loads((out_dir / "best.json").read_text())["env_options"] == {"max_steps_in_episode": 50}


@pytest.mark.parametrize("argv, words", [
    (["--sweep", "lr=1e-3,1e-4"], ["--sweep", "does not apply"]),
    (["--chunks", "5"], ["--chunks", "does not apply"]),
    (["--eval-every", "5"], ["--eval-every"]),
    (["--no-tensorboard"], ["--tensorboard"]),
    (["--devices", "2"], ["--devices 2", "one device"]),
    (["--coordinator", "localhost:1234"], ["--coordinator", "one process"]),
    (["--seed", "-1"], ["--seed -1", "4,294,967,295"]),
    (["--fraction", "0.5"], ["--fraction is an option of --method pbt"]),
])
def test_es_refuses_in_one_line_what_it_cannot_apply(searches, capsys, tmp_path, argv, words):
    out = tmp_path / "es"
    _one_line_error(capsys, ["tune", "--method", "es", *argv, "--out", str(out)], *words)
    assert not out.exists()


def test_es_refuses_a_config_option_it_cannot_apply(searches, capsys, tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"checkpoint_every": 4}))
    _one_line_error(capsys, ["tune", "--method", "es", "--config", str(config)], "checkpoint_every 4", "does not apply")


def test_resume_is_read_in_either_spelling(searches, capsys, tmp_path):
    assert train_command.resume_dir(["--lr", "3", "--resume=a/b"]) == "a/b"
    assert train_command.resume_dir(["--resume", "a/b"]) == "a/b" and train_command.resume_dir(["--lr", "3"]) is None
    assert cli.main(["tune", "--method", "es", f"--resume={tmp_path}"]) == 0
    assert searches == [(None, str(tmp_path), True)]
    assert "pjrl train --config" in capsys.readouterr().out
    _one_line_error(capsys, ["tune", "--resume", str(tmp_path), "--pbt-every", "5"], "drop --pbt-every 5")


def test_evolve_flags_are_evolve_spec_fields(searches, capsys, tmp_path):
    assert cli.main(["evolve", "--population", "4", "--env-option", "max_steps_in_episode=20", "--sigma", "0.1",
                     "--out", str(tmp_path / "s")]) == 0
    (spec, out, resume), = searches
    assert (spec.population, spec.sigma, spec.lr, spec.generations) == (4, 0.1, 0.05, 20)
    assert spec.env_options == {"max_steps_in_episode": 20} and out == str(tmp_path / "s") and not resume
    assert evolve.Search(spec).env.max_episode_steps == 20
    _one_line_error(capsys, ["evolve", "--resume", str(tmp_path), "--generations", "30"], "drop --generations")
    with pytest.raises(evolve.ConfigError, match="--devices 2"):
        evolve.EvolveSpec(devices=2).check()


# ---------------------------------------------------------------- one rule, one place


def test_wandb_keys_are_declared_once(tmp_path):
    pytest.importorskip("wandb")
    spec, _ = cli.parse_train(["--wandb", "--wandb-project", "p", "--wandb-group", "g"])
    assert spec.wandb == dataclasses.asdict(WandbOptions(project="p", group="g"))
    spec, _ = cli.parse_train(["--wandb-project", "p"])
    assert spec.wandb is None


def test_eval_checks_its_seed_as_every_root_seed_is_checked(capsys, tmp_path):
    _one_line_error(capsys, ["eval", str(tmp_path), "--seed", str(2**32)], "--seed 4294967296", "4,294,967,295")


def test_eval_json_is_strict_json():
    spec = RunSpec(num_seeds=2)
    ex = types.SimpleNamespace(spec=spec, members=[{}], steps_per_update=512, env=types.SimpleNamespace(num_envs=2))
    returns = np.array([[1.0, np.nan], [np.nan, np.nan]])
    results = {"greedy": {"returns": returns, "lengths": returns}}
    report = evaluate.evaluation_report(ex, 4, 7, 2, results)
    text = json.dumps(report, allow_nan=False)  # raises on a NaN left in
    greedy = json.loads(text)["members"][0]["greedy"]
    assert greedy["returns"] == [[1.0, None], [None, None]] and greedy["return_mean"] == 1.0
    assert greedy["per_seed"]["return_mean"] == [1.0, None]
    assert report["step"] == 4 * 512 and report["protocol"]["eval_seed"] == 7
