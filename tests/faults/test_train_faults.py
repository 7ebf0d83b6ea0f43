"""Issue 20, `llmcse train`: case 6 (resume only from a complete checkpoint and only with the same
settings; a killed rerun never leaves an earlier model looking like its result) and case 14's
train part (eval_task and --set values give one-line errors, before any work)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcse.cli import main
from llmcse.train.folders import COMPLETE, checkpoints_dir, previous_dir

SETTINGS = ["batch_size=4", "eval_steps=2", "max_examples=16", "eval_task=toysts:dev", "keep_checkpoints=0"]


def _args(data: Path, out: Path, data_dir: Path, *sets: str) -> list[str]:
    return ["-q", "train", "--recipe", "sup-simcse", "--data", str(data), "--out", str(out), "--data-dir", str(data_dir),
            *[a for s in (*SETTINGS, *sets) for a in ("--set", s)]]


def _snapshot(*folders: Path) -> dict[str, tuple]:
    """Every file under the folders: its size and modification time (the md5 of its bytes when small;
    checkpoints are hundreds of MB)."""
    def state(p: Path) -> tuple:
        st = p.stat()
        return (st.st_size, st.st_mtime_ns, hashlib.md5(p.read_bytes()).hexdigest() if st.st_size < 1 << 20 else None)

    return {str(p): state(p) for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _losses(summary: dict) -> list[float]:
    return [e["loss"] for e in summary["log_history"] if "loss" in e]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, shared_data_dir):
    """A finished 4-step run keeping every checkpoint: (data, model folder, data dir), not to be mutated."""
    root = tmp_path_factory.mktemp("finished")
    data_dir = root / "data"
    shutil.copytree(Path(__file__).parents[1] / "data" / "data_dir", data_dir)
    data = root / "triplets.tsv"
    shutil.copy(shared_data_dir / "nli" / "triplets.tsv", data)
    out = root / "model"
    assert main(_args(data, out, data_dir, "max_steps=4")) == 0
    return data, out, data_dir


def _copy_run(finished_run, target: Path, checkpoints: bool = True) -> Path:
    """A copy of the finished run made of hard links (fast; a test replaces a file, never edits it)."""
    _, out, _ = finished_run
    shutil.copytree(out, target / "model", copy_function=os.link)
    if checkpoints:
        shutil.copytree(checkpoints_dir(out), checkpoints_dir(target / "model"), copy_function=os.link)
    return target / "model"


def test_case6a_resume_skips_a_checkpoint_whose_save_was_cut_short(finished_run, tmp_path, caplog):
    """Before: resume=true picked the newest checkpoint-N folder, half-written by a kill during its
    save, and crashed (SafetensorError: invalid header length). After: the newest *complete* one."""
    data, reference, data_dir = finished_run
    out = _copy_run(finished_run, tmp_path)
    cut = checkpoints_dir(out) / "checkpoint-4"
    (cut / COMPLETE).unlink()  # killed while the Trainer wrote checkpoint-4: no completion marker ...
    weights = (cut / "model.safetensors").read_bytes()[:1000]  # ... and its weights half-written
    (cut / "model.safetensors").unlink()  # (a hard link to the fixture's file: replaced, not truncated)
    (cut / "model.safetensors").write_bytes(weights)
    (cut / "optimizer.pt").unlink()
    shutil.rmtree(out)  # the killed run never got to save its model
    caplog.set_level("INFO", logger="llmcse.train")
    # keep_checkpoints may differ on a resume (it changes what stays on disk, not what is trained)
    assert main(_args(data, out, data_dir, "max_steps=4", "resume=true", "keep_checkpoints=2")) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"skipping {cut}: its save did not finish") for m in messages), messages
    assert any(m == f"resuming from {checkpoints_dir(out) / 'checkpoint-2'}" for m in messages), messages
    summary = json.loads((out / "llmcse_training.json").read_text())
    expected = json.loads((reference / "llmcse_training.json").read_text())
    assert summary["steps"] == 4
    assert _losses(summary) == pytest.approx(_losses(expected), rel=1e-5)  # the uninterrupted run's losses
    assert summary["dev_spearman_after"] == expected["dev_spearman_after"]
    assert not checkpoints_dir(out).exists()  # finished, not keeping every checkpoint: deleted


RESUME_CHANGES = [
    (["lr=1e-3"], "lr 5e-05 -> 0.001"),
    (["max_steps=6"], "max_steps 4 -> 6"),
    (["lr=1e-3", "seed=7"], "lr 5e-05 -> 0.001; seed 42 -> 7"),
    (["data=EDITED"], "data (content changed: md5"),
]


@pytest.mark.parametrize("changes,named", RESUME_CHANGES, ids=["lr", "max_steps", "two-keys", "data"])
def test_case6b_resume_with_other_settings_is_refused_naming_them(finished_run, tmp_path, capsys, changes, named):
    """Before: resume=true with another lr continued the old schedule (lr from the optimizer state)
    while recording the new value. After: refused, exit 2, naming every changed key; nothing touched."""
    data, out, data_dir = finished_run  # refused before touching anything: the fixture itself
    edited = tmp_path / "edited.tsv"
    lines = data.read_text(encoding="utf-8").splitlines(keepends=True)
    edited.write_text("".join(lines[:2] + ["A changed premise .\tA changed hypothesis .\tAn unrelated one .\n"]
                              + lines[3:]), encoding="utf-8")
    sets = [s.replace("EDITED", str(edited)) for s in changes]
    before = _snapshot(out, checkpoints_dir(out))
    assert main(_args(data, out, data_dir, "max_steps=4", "resume=true", *sets)) == 2
    err = _error_line(capsys)
    assert err.startswith(f"llmcse: error: resume=true with settings other than the checkpoints' in "
                          f"{checkpoints_dir(out)}: ") and named in err, err
    assert _snapshot(out, checkpoints_dir(out)) == before


def test_case6c_a_killed_rerun_leaves_no_model_that_looks_like_its_result(finished_run, tmp_path):
    """Before: a rerun into a finished folder trained into <out>/checkpoints while the earlier model
    and its llmcse_training.json stayed in <out>: killed, the old model passed for the new one.
    After: the earlier model is moved to <out>.previous at the start (kept until the new one is in
    place); a killed run leaves no <out> at all; the next run puts its own model there."""
    data, _, data_dir = finished_run
    out = _copy_run(finished_run, tmp_path, checkpoints=False)  # a finished run keeping no checkpoints
    old = {Path(k).relative_to(out): v for k, v in _snapshot(out).items()}
    cmd = [sys.executable, "-m", "llmcse.cli", *_args(data, out, data_dir, "max_steps=200", "lr=1e-4")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    marker = checkpoints_dir(out) / "checkpoint-2" / COMPLETE
    deadline = time.time() + 300
    while time.time() < deadline and not marker.exists() and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the kill must land after the first checkpoint"
    assert not out.exists()  # nothing at <out> passes for the killed run's result
    aside = previous_dir(out)
    assert {Path(k).relative_to(aside): v for k, v in _snapshot(aside).items()} == old  # earlier model intact

    assert main(_args(data, out, data_dir, "max_steps=2", "lr=1e-4")) == 0  # a fresh run (no resume)
    summary = json.loads((out / "llmcse_training.json").read_text())
    assert (summary["steps"], summary["config"]["lr"]) == (2, 1e-4)
    assert not previous_dir(out).exists()
    assert sorted(p.name for p in checkpoints_dir(out).iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]


def _a_file(t: Path) -> None:
    (t / "out").write_text("mine\n")


def _a_user_folder(t: Path) -> None:
    (t / "out").mkdir()
    (t / "out" / "notes.txt").write_text("mine\n")


def _base_inside_an_earlier_model(t: Path) -> None:
    """The folder is an earlier model (ours to replace), but the new run's base lives in it."""
    (t / "out" / "base").mkdir(parents=True)
    (t / "out" / "llmcse_training.json").write_text("{}\n")


def _data_in_checkpoints(t: Path) -> None:
    """The data was put where this run keeps its checkpoints."""
    (t / "out.checkpoints").mkdir()
    shutil.copy(t / "triplets.tsv", t / "out.checkpoints")


FOLDER_CASES = [
    ("a file", _a_file, "--out {out} is a file; name a folder for the model"),
    ("a user folder", _a_user_folder, "--out {out} is a non-empty folder that llmcse train did not make"),
    ("base inside", _base_inside_an_earlier_model, "--base {out}/base is inside {out}, which this run replaces"),
    ("data in checkpoints", _data_in_checkpoints, "--data {data} is inside {out}.checkpoints, which this run replaces"),
]


@pytest.mark.parametrize("what,make,message", FOLDER_CASES, ids=[c[0] for c in FOLDER_CASES])
def test_case6c_out_that_is_not_ours_to_replace_is_refused(tmp_path, shared_data_dir, tiny_data_dir, capsys,
                                                          what, make, message):
    shutil.copy(shared_data_dir / "nli" / "triplets.tsv", tmp_path / "triplets.tsv")
    make(tmp_path)
    out = tmp_path / "out"
    data = tmp_path / ("out.checkpoints" if what == "data in checkpoints" else "") / "triplets.tsv"
    before = _snapshot(tmp_path)
    assert main([*_args(data, out, tiny_data_dir, "max_steps=2"), "--base", str(out / "base")] if what == "base inside"
                else _args(data, out, tiny_data_dir, "max_steps=2")) == 2
    assert _error_line(capsys).startswith("llmcse: error: " + message.format(out=out, data=data))
    assert _snapshot(tmp_path) == before
    assert what == "data in checkpoints" or not checkpoints_dir(out).exists()


SET_ERRORS = [
    # before: ValueError: too many values to unpack (a traceback)
    ("eval_task=sts", "'sts': model selection (eval_task) needs one STS task with its dev split, here: toysts:dev"),
    ("eval_task=stsb,toysts:dev", "needs one STS task with its dev split, here: toysts:dev"),
    ("eval_task=nope:dev", "unknown task 'nope'"),
    ("eval_task=toysts", "'toysts': model selection (eval_task) needs an STS dev split (e.g. stsb:dev), not sts test"),
    ("eval_task=toysts:train", "task 'toysts' has no split 'train'"),
    ("eval_task=", "'': model selection (eval_task) needs one STS task with its dev split"),
    ("lr", "--set expects KEY=VALUE (a train setting, e.g. max_steps=100), got 'lr'"),
    ("epoch=2", "unknown key train.epoch. Did you mean 'epochs'?"),
    ("generate.n=5", "--set generate.n=5: llmcse train only has train.* settings"),
    ("lr=fast", "train.lr: expected a number, got 'fast'"),
    ("lr=-1", "train.lr: must be > 0, got -1"),
    ("lr=nan", "train.lr: expected a finite number, got 'nan'"),
    ("batch_size=0", "train.batch_size: must be >= 1, got 0"),
    ("gradient_accumulation=0", "train.gradient_accumulation: must be >= 1, got 0"),
    ("temperature=0", "train.temperature: must be > 0, got 0"),
    ("resume=maybe", "train.resume: expected true or false, got 'maybe'"),
    ("false_negative_threshold=2", "train.false_negative_threshold: a cosine in [-1, 1], got 2.0"),
    ("dtype=int8", "train.dtype: one of float32, bfloat16, float16, auto, got 'int8'"),
    ("lora_export=both", "train.lora_export: one of merged, adapter, got 'both'"),
]


@pytest.mark.parametrize("setting,message", SET_ERRORS, ids=[s for s, _ in SET_ERRORS])
def test_case14_eval_task_and_set_values_are_one_line_errors(tmp_path, shared_data_dir, tiny_data_dir, capsys,
                                                            setting, message):
    out = tmp_path / "out"
    args = _args(shared_data_dir / "nli" / "triplets.tsv", out, tiny_data_dir, "max_steps=2")
    assert main([*args, "--set", setting]) == 2
    assert message in _error_line(capsys)
    assert not out.exists() and not checkpoints_dir(out).exists()
