"""Where a training run keeps what, and how it resumes honestly.

* ``<out>/`` holds the finished model only: the sentence-transformers folder, its README.md model
  card and ``llmcse_training.json``. It exists only once a run finished: the model is assembled in
  ``<out>.checkpoints/final-model/`` and renamed into place, so a killed run never leaves a
  half-written model, nor an earlier run's model, at ``<out>``.
* ``<out>.checkpoints/`` holds the Trainer's checkpoints (optimizer state included), the run's
  settings (``llmcse_run.json``) and, per checkpoint, a completion marker written after the save
  finished. It is deleted when the run finishes, unless ``keep_checkpoints=0`` (every checkpoint
  kept, for ``llmcse rfd``).
* ``<out>.previous/``: an earlier finished model at ``<out>`` is moved here when a new run starts
  (so nothing downstream takes it for the new result) and deleted once the new model is in place.

``resume=true`` continues from the newest *complete* checkpoint (a save cut short by a kill is
skipped, with a warning, and deleted) and only with the settings that made the checkpoints:
a resume that changes anything but :data:`RESUME_MAY_DIFFER` is refused, naming the changes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from llmcse.errors import LlmcseError

logger = logging.getLogger(__name__)

FINISHED = "llmcse_training.json"  # written last into a finished model folder
RUN_STATE = "llmcse_run.json"  # the settings and data that made the checkpoints
COMPLETE = "llmcse_checkpoint_complete"  # in a checkpoint folder once every file of it is written
FINAL = "final-model"  # where the finished model is assembled before it is renamed to <out>
LEGACY_CHECKPOINTS = "checkpoints"  # checkpoints inside the model folder, as runs before this layout kept them
# Settings a resume may change, because they do not change what is trained: how the run is
# restarted, where its files are (the data is compared by content instead), how often the loss is
# logged, how many checkpoints stay on disk, and activation checkpointing (memory, same gradients).
RESUME_MAY_DIFFER = ("resume", "out", "data", "logging_steps", "keep_checkpoints", "gradient_checkpointing")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def _beside(out: str | Path, suffix: str) -> Path:
    path = Path(os.path.abspath(out))
    return path.with_name(path.name + suffix)


def checkpoints_dir(out: str | Path) -> Path:
    return _beside(out, ".checkpoints")


def previous_dir(out: str | Path) -> Path:
    return _beside(out, ".previous")


def _numbered(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        match = _CHECKPOINT.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE).is_file()


def completion_callback():
    """A TrainerCallback that marks a checkpoint complete once the Trainer finished writing it
    (``on_save`` runs after the model, optimizer, scheduler, RNG and trainer state are saved)."""
    from transformers import TrainerCallback

    class MarkCheckpointComplete(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if state.is_world_process_zero and folder.is_dir():
                (folder / COMPLETE).write_text(f"{state.global_step}\n", encoding="utf-8")

    return MarkCheckpointComplete()


def rfd_checkpoints(model_dir: str | Path) -> tuple[list[tuple[int, Path]], Path]:
    """(step, folder) of the complete checkpoints of a run, in step order, and where they were looked
    for: ``<run>.checkpoints/``, or ``<run>/checkpoints/`` for runs trained before that layout."""
    folder = checkpoints_dir(model_dir)
    if folder.is_dir():
        return [(s, p) for s, p in _numbered(folder) if is_complete(p)], folder
    legacy = Path(model_dir) / LEGACY_CHECKPOINTS
    if legacy.is_dir():
        return _numbered(legacy), legacy
    return [], folder


def _is_ours(folder: Path) -> bool:
    """A model folder an earlier ``llmcse train`` made (finished, or killed in the old layout)."""
    return (folder / FINISHED).is_file() or (folder / LEGACY_CHECKPOINTS).is_dir()


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_paths(out: str | Path, inputs: dict[str, str]) -> None:
    """Refuse an ``--out`` that would replace someone else's files or one of this run's inputs."""
    out_path = Path(os.path.abspath(out))
    if out_path.exists() and not out_path.is_dir():
        raise LlmcseError(f"--out {out} is a file; name a folder for the model")
    if out_path.is_dir() and any(out_path.iterdir()) and not _is_ours(out_path):
        raise LlmcseError(f"--out {out} is a non-empty folder that llmcse train did not make (no {FINISHED}); "
                          "name a new folder, the whole of it is replaced by the trained model")
    replaced = (out_path, checkpoints_dir(out), previous_dir(out))
    for what, value in inputs.items():
        path = Path(os.path.abspath(value))
        folder = next((r for r in replaced if _inside(path, r)), None) if value and path.exists() else None
        if folder:
            raise LlmcseError(f"--{what} {value} is inside {folder}, which this run replaces; "
                              "copy it elsewhere or name another --out")


def _clear_checkpoints(folder: Path) -> None:
    if not folder.exists():
        return
    foreign = [p.name for p in folder.iterdir()
               if not (_CHECKPOINT.fullmatch(p.name) or p.name in (RUN_STATE, FINAL, "eval", "runs"))]
    if foreign:
        raise LlmcseError(f"{folder} holds files llmcse train did not write ({', '.join(sorted(foreign)[:3])}); "
                          "move them, the folder is where this run keeps its checkpoints")
    shutil.rmtree(folder)


def _differences(stored: dict, current: dict) -> list[str]:
    keys = sorted((set(stored["config"]) | set(current["config"])) - set(RESUME_MAY_DIFFER))
    changed = [f"{k} {stored['config'].get(k)!r} -> {current['config'].get(k)!r}" for k in keys
               if stored["config"].get(k) != current["config"].get(k)]
    if stored.get("data_md5") != current["data_md5"]:
        changed.append(f"data (content changed: md5 {stored.get('data_md5')} -> {current['data_md5']})")
    return changed


def resume_point(out: str | Path, state: dict) -> tuple[Path | None, list[Path]]:
    """The newest complete checkpoint to resume from (None: there is none), after checking that the
    checkpoints were made with these settings; and the checkpoints after it, whose saves were cut
    short. Changes nothing on disk (``start`` does, once the model has loaded)."""
    folder = checkpoints_dir(out)
    numbered = _numbered(folder)
    complete = [(s, p) for s, p in numbered if is_complete(p)]
    if not numbered and _numbered(Path(out) / LEGACY_CHECKPOINTS):
        logger.warning("%s: checkpoints of an older llmcse, which did not record their settings or whether each "
                       "save finished: not resumed, training starts over", Path(out) / LEGACY_CHECKPOINTS)
    if not complete:
        if numbered:
            logger.warning("no complete checkpoint in %s (%s: saves cut short): starting from the beginning",
                           folder, ", ".join(p.name for _, p in numbered))
        return None, []
    try:
        stored = json.loads((folder / RUN_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise LlmcseError(f"resume=true: {folder / RUN_STATE} is missing or unreadable, so the settings that made "
                          "the checkpoints are unknown; drop resume=true to start over") from None
    changed = _differences(stored, state)
    if changed:
        raise LlmcseError(f"resume=true with settings other than the checkpoints' in {folder}: {'; '.join(changed)}. "
                          "Resume with the same settings, or drop resume=true to start over "
                          "(to train further, start a new run with --base set to the trained model)")
    step, chosen = complete[-1]
    return chosen, [p for s, p in numbered if s > step]


def start(out: str | Path, state: dict, resume_from: Path | None, cut_short: list[Path]) -> None:
    """Prepare the folders once the run is set to go (call on the main process only).

    A fresh run (or a resume with nothing to resume) deletes earlier checkpoints and records
    ``state``; a resume deletes the checkpoints whose saves were cut short. An earlier finished
    model at ``out`` is moved to ``<out>.previous`` either way.
    """
    folder = checkpoints_dir(out)
    for path in cut_short:
        logger.warning("skipping %s: its save did not finish (the run was stopped while writing it); deleted it; "
                       "resuming from %s", path, resume_from)
        shutil.rmtree(path)
    if resume_from is None:
        _clear_checkpoints(folder)
        folder.mkdir(parents=True)
        (folder / RUN_STATE).write_text(json.dumps(state, indent=2, default=str) + "\n", encoding="utf-8")
    _move_earlier_model_aside(Path(out))


def _move_earlier_model_aside(out: Path) -> None:
    if not out.is_dir():
        return
    if not any(out.iterdir()):
        out.rmdir()
        return
    aside = previous_dir(out)
    if aside.exists():  # from a run whose successor finished but was stopped before deleting it
        shutil.rmtree(aside)
    out.rename(aside)
    logger.warning("%s held the model of an earlier run: moved it to %s until this run's model replaces it",
                   out, aside)


def final_dir(out: str | Path) -> Path:
    """An empty folder to assemble the finished model in (same file system as ``out``)."""
    folder = checkpoints_dir(out) / FINAL
    if folder.exists():
        shutil.rmtree(folder)
    return folder


def finish(out: str | Path, keep_all_checkpoints: bool) -> None:
    """Put the assembled model at ``out``; drop the earlier model and (unless kept) the checkpoints."""
    out_path, assembled = Path(out), checkpoints_dir(out) / FINAL
    if out_path.exists():  # made by someone else while this run trained: not ours to replace
        raise LlmcseError(f"{out} appeared while this run trained; the trained model is in {assembled}: "
                          f"move {out} away and rename {assembled} to it")
    assembled.rename(out_path)
    if previous_dir(out).exists():
        shutil.rmtree(previous_dir(out))
    if not keep_all_checkpoints:
        shutil.rmtree(checkpoints_dir(out))
