"""Run directories: streamed metrics, TensorBoard, W&B offline, checkpoints, kill and resume, eval, plot."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pjrl_agents import cli
from tests import shared_run

pytestmark = pytest.mark.xdist_group("runs")

TRAIN = shared_run.TRAIN


def _run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


def _wait_for_checkpoint(out: Path, proc, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        d = out / "checkpoints"
        if d.is_dir() and any(p.name.isdigit() for p in d.iterdir()):
            return
        if proc.poll() is not None:
            raise AssertionError(f"run ended before its first checkpoint: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture
def uninterrupted(finished_run):
    """The shared finished run (tests/shared_run.py): 2 seeds, 80 updates, evaluations every 20."""
    return finished_run


def test_run_directory_contents(uninterrupted):
    out = uninterrupted
    for name in ("run.json", "summary.json", "metrics.jsonl", "metrics.csv", "tb", "checkpoints"):
        assert (out / name).exists(), name
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 80 * 2 and {r["seed"] for r in rows} == {0, 1}
    assert rows[-1]["step"] == 40960 and "entropy" in rows[-1]


def test_tensorboard_events_load_with_tensorboards_reader(uninterrupted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(uninterrupted / "tb"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"mean/episode_return", "seed0/episode_return", "seed1/loss"} <= set(tags)
    events = acc.Scalars("mean/episode_return")
    assert len(events) == 80 and events[-1].step == 40960


def test_sigkill_then_resume_matches_an_uninterrupted_run(uninterrupted, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen(TRAIN + shared_run.ARGV + ["--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_checkpoint(out, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists(), "the run finished before it was killed"
    res = _run(TRAIN + ["--resume", str(out)])
    assert res.returncode == 0, res.stderr
    resumed = json.loads((out / "summary.json").read_text())
    whole = json.loads((uninterrupted / "summary.json").read_text())
    assert resumed["total_timesteps"] == whole["total_timesteps"] == 40960
    assert resumed["resumed_from_update"] > 0
    # the checkpoint holds the whole state, RNG included: the resumed run is the same run
    for a, b in zip(resumed["final_return_per_seed"], whole["final_return_per_seed"]):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(b)), (resumed, whole)
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 80 * 2
    # the evaluations every 20 updates: none lost or repeated by the kill, the same numbers
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (uninterrupted / "eval.jsonl").read_text().splitlines()]
    assert [(r["update"], r["seed"]) for r in evals] == [(u, s) for u in (20, 40, 60, 80) for s in (0, 1)]
    for a, b in zip(evals, expected):
        assert a.keys() == b.keys() and a["step"] == b["step"]
        for k in ("greedy_return", "stochastic_return"):
            assert abs(a[k] - b[k]) <= 1e-3 * max(1.0, abs(b[k])), (a, b)


@pytest.mark.slow
def test_sigint_saves_a_final_checkpoint(tmp_path):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(TRAIN + ["--total-timesteps", "200000", "--checkpoint-every", "50", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() - t0 < 240
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and "--resume" in err
    done = summary["num_updates"]
    assert 0 < done < 390
    assert str(done) in os.listdir(out / "checkpoints")


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    res = _run(TRAIN + ["--resume", str(tmp_path)])
    assert res.returncode == 2 and "no run" in res.stderr and "Traceback" not in res.stderr
    assert os.listdir(tmp_path) == []  # nothing written


def test_no_readable_checkpoint_is_a_clear_error(finished_run_copy, capsys):
    out = finished_run_copy
    (out / "summary.json").unlink()  # as if killed before it finished
    for f in (out / "checkpoints").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    assert cli.main(["train", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "can be read" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_unwritable_out_fails_at_start(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    t0 = time.time()
    assert cli.main(["train", "--quiet", "--out", str(blocker / "run")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert time.time() - t0 < 60


@pytest.mark.slow
def test_wandb_offline(tmp_path):
    out = tmp_path / "wb"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    res = _run(TRAIN + ["--total-timesteps", "4096", "--wandb", "--out", str(out)], env=env)
    assert res.returncode == 0, res.stderr
    runs = list((out / "wandb").glob("offline-run-*"))
    assert runs and any(f.suffix == ".wandb" for f in runs[0].iterdir())


def test_eval_and_plot(uninterrupted, tmp_path, capsys):
    first, again = tmp_path / "eval.json", tmp_path / "again.json"
    assert cli.main(["eval", str(uninterrupted), "--episodes", "6", "--out", str(first)]) == 0
    text = capsys.readouterr().out
    assert "greedy" in text and "stochastic" in text and "2 seed(s)" in text
    report = json.loads(first.read_text())
    assert report["update"] == 80 and report["protocol"]["episodes_per_seed"] == 8  # 2 per env of 4
    greedy = report["members"][0]["greedy"]
    assert len(greedy["per_seed"]["return_mean"]) == 2 and len(greedy["returns"][1]) == 8
    assert greedy["return_mean"] == pytest.approx(sum(greedy["per_seed"]["return_mean"]) / 2)
    # evaluation is reproducible bit for bit
    assert cli.main(["eval", str(uninterrupted), "--episodes", "6", "--out", str(again)]) == 0
    assert again.read_bytes() == first.read_bytes()
    # the evaluations during training went to eval.jsonl and TensorBoard
    rows = [json.loads(line) for line in (uninterrupted / "eval.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [20, 20, 40, 40, 60, 60, 80, 80]
    limit = shared_run.MAX_EPISODE_STEPS  # the run's --env-option
    assert all(0 < r["greedy_return"] <= limit and r["greedy_length"] == r["greedy_return"] for r in rows)
    png = tmp_path / "curves.png"
    assert cli.main(["plot", str(uninterrupted), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_sinks_write_what_tensorboard_and_json_read_back(tmp_path):
    """Rows as the runner hands them over: TensorBoard reads every finite scalar at its step (float32)
    and leaves out the others; JSONL holds null for them; CSV has six significant digits; mean rows
    are the mean over seeds and are not written to the files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pjrl_agents.run import sinks
    rows = [{"member": 0, "seed": s, "update": u, "step": 512 * u, "loss": 0.1 * u + s / 3,
             "episode_return": float("nan") if u == 1 else 1e3 * s + u} for u in (1, 2) for s in (0, 1)]
    rows += [{**rows[0], "member": 1, "update": 3, "step": 1536, "loss": 1e39}]  # beyond float32: +inf
    rows += sinks.mean_rows(rows)
    assert [r for r in rows if r["seed"] == "mean" and r["update"] == 2][0]["loss"] == pytest.approx(0.2 + 1 / 6)
    files, tb = sinks.FileSink(tmp_path), sinks.TensorBoardSink(tmp_path)
    files.log(rows[:4])
    tb.log(rows[:4])
    files.log(rows[4:])
    tb.log(rows[4:])
    files.close()
    tb.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"seed0/loss", "seed1/loss", "seed0/episode_return", "seed1/episode_return",
                                          "mean/loss", "mean/episode_return", "m1/seed0/loss", "m1/mean/loss"}
    seed1 = acc.Scalars("seed1/loss")
    assert [e.step for e in seed1] == [512, 1024] and seed1[0].value == pytest.approx(1 / 3 + 0.1, rel=1e-7)
    assert [e.step for e in acc.Scalars("seed0/episode_return")] == [1024]  # NaN at update 1 is left out
    assert [(e.step, e.value) for e in acc.Scalars("mean/episode_return")] == [(1024, 502.0)]
    assert [e.value for e in acc.Scalars("m1/seed0/loss")] == [float("inf")]
    lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and lines[0]["episode_return"] is None and lines[3]["episode_return"] == 1002.0
    assert lines[1] == {**rows[1], "episode_return": None} and lines[4]["loss"] == 1e39
    csv_lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv_lines[0] == "member,seed,update,step,loss,episode_return"
    assert csv_lines[2] == "0,1,1,512,0.433333,nan" and len(csv_lines) == 6


def test_chunks_stretch_to_a_second_between_their_planned_length_and_25_times_it(monkeypatch):
    from pjrl_agents.run import loop
    pace = loop.Pace.for_run(1000, 50, (0, 0, None))
    assert (pace.shortest, pace.longest) == (20, 500)
    assert loop.Pace.for_run(195, 50, (0, 0, None)).longest == 100
    assert (loop.Pace.for_run(195, 1, (0, 0, None)).shortest, loop.Pace.for_run(195, 1, (0,)).longest) == (195, 195)
    assert (loop.Pace.for_run(195, 50, (8, 0, None)).shortest, loop.Pace.for_run(195, 50, (8,)).longest) == (4, 8)
    assert (loop.Pace.for_run(1000, 50, (0, 30, 10)).shortest, loop.Pace.for_run(1000, 50, (0, 30)).longest) == (10, 30)
    clock = iter([0.0, 0.01, 0.02, 2.04, 2.05, 15.0, 10.0])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    assert pace.length() == 20
    pace.dispatched(20)  # at 0.0
    pace.dispatched(20)  # at 0.01, queued behind the first
    pace.finished()  # the first at 0.02: 20 updates in 0.02 s, 1000 would take 1 s; at most 500
    assert pace.length() == 500
    pace.finished()  # the second at 2.04, started when the first ended: 20 updates in 2.02 s, 10 would do
    assert pace.length() == 20  # at least the planned 20
    pace.dispatched(20)  # at 2.05, after an idle gap (a checkpoint) that is not counted
    pace.finished()  # at 15.0: 0.65 s an update
    assert pace.length() == 20
    monkeypatch.setattr(loop.jax, "process_count", lambda: 2)  # processes keep to the planned length
    assert loop.Pace.for_run(195, 50, (0,)).longest == 4


def test_a_chunk_keeps_what_every_run_shares_unbatched():
    """DQN's learning-start `lax.cond` stays a cond in the vmapped chunk (the update index and, with
    one config, its numbers are shared); vmapped as the state comes in, it would be a select."""
    import jax
    import jax.extend

    from pjrl_agents.run import loop
    from pjrl_agents.run.experiment import build
    from pjrl_agents.run.spec import RunSpec

    def conds(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            n += eqn.primitive.name == "cond"
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                n += conds(sub)
        return n

    ex = build(RunSpec(algo="dqn", num_seeds=2, devices=1, settings={"total_timesteps": 2000, "learning_starts": 500}))
    state = ex.abstract_state()
    batched = conds(jax.make_jaxpr(jax.vmap(ex.agent.update))(state).jaxpr)
    chunk = loop.chunk_fn(ex.agent, 1, ex.member_configs()[0])
    shared = conds(jax.make_jaxpr(jax.vmap(chunk, in_axes=(0, None, None)))(state, 0, 1).jaxpr)
    assert shared == batched + 2  # the chunk's skip, and the learning start
