"""What carries a run across a stop, and what refuses to resume it.

A checkpoint's meta says where the run stood (epoch, step, the epoch's figures so far, whether
an evaluation was cut short); these checks refuse a resume that could not continue the run
exactly, with a usage error that says what would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blitz.batches import LoaderBatches, TensorBatches
from blitz.checkpoint import Checkpoint, load_checkpoint
from blitz.errors import CheckpointError, UsageError
from blitz.runs import rerun_command


# What a resume reads of a checkpoint: where the run stood (meta), and the state of training
RESUME_META = ("epoch", "step_in_epoch", "global_step")
RESUME_TRAINING = ("optimizer", "scheduler", "scaler", "batches", "rng")


def load_resumable(path: Path) -> Checkpoint:
    """A run's last.ckpt, to resume from; a damaged one says that resuming needs it."""
    try:
        state = load_checkpoint(path)
        lacking = [f"meta.{key}" for key in RESUME_META if type(state.meta.get(key)) is not int]
        lacking += [key for key in RESUME_TRAINING if key not in state.training]
        if lacking:
            raise CheckpointError(
                f"'{path}' is a damaged blitz checkpoint: it lacks {', '.join(lacking)}.", damaged=True
            )
        return state
    except CheckpointError as exc:
        if not exc.damaged:  # another version, say: starting again would throw the run away
            raise
        raise CheckpointError(
            f"{exc} A run resumes from its last.ckpt only (best.ckpt serves blitz eval and predict); start it "
            f"again: {rerun_command(path.parent.parent)}", damaged=True,
        ) from None


@dataclass
class EpochSoFar:
    """The part of an epoch trained before a stop: saved with a mid-epoch checkpoint, so that the
    resumed epoch's record (mean loss, seconds, images/s) covers the whole epoch."""

    steps: int = 0
    loss_sum: float = 0.0
    seconds: float = 0.0
    images: int = 0

    @classmethod
    def from_meta(cls, saved: Any) -> EpochSoFar:
        """From a checkpoint's meta (absent in checkpoints of earlier versions: nothing carried)."""
        if not isinstance(saved, dict):
            return cls()
        return cls(int(saved.get("steps", 0)), float(saved.get("loss_sum", 0.0)),
                   float(saved.get("seconds", 0.0)), int(saved.get("images", 0)))


def check_resumable(meta: dict[str, Any], epochs: int) -> None:
    """Refuse to resume a run that has nothing left to do at ``epochs`` epochs (its files stay
    as they are: a resume would only rewrite its report)."""
    done, in_progress = int(meta["epoch"]) - 1, int(meta["step_in_epoch"]) > 0
    if done == epochs and not in_progress and not meta.get("evaluation_pending"):
        raise UsageError(
            f"This run has finished its {done} epoch(s): nothing to resume. To train it further, "
            f"add --epochs N with N above {done} (its schedule must be 'constant'), or start a new run."
        )


def resume_position(meta: dict[str, Any], steps_per_epoch: int) -> tuple[int, int]:
    """The epoch and step a resumed run starts at: where it was saved, or the next epoch's start
    where the saved epoch's steps were all done."""
    epoch, step = int(meta["epoch"]), int(meta["step_in_epoch"])
    return (epoch + 1, 0) if step >= steps_per_epoch else (epoch, step)


def check_epochs_cover(meta: dict[str, Any], epochs: int, start_epoch: int, start_step: int) -> None:
    """Refuse ``--epochs`` below where the run is (it would rewrite the run's record to fewer
    epochs), saying the fewest that leave something to do: the epoch in progress, the evaluation
    a stop left pending, or else one more epoch."""
    done, in_progress = start_epoch - 1, start_step > 0
    least = done if meta.get("evaluation_pending") and not in_progress else done + 1
    if epochs < done + in_progress:
        started = (f"{done} epoch(s) done and one in progress" if done and in_progress
                   else "one epoch in progress" if in_progress else f"{done} epoch(s) done")
        raise UsageError(
            f"--epochs {epochs} would end this run before where it is ({started}); resume with --epochs {least} or more."
        )


def check_same_epoch_length(
    meta: dict[str, Any], batches: TensorBatches | LoaderBatches, steps_per_epoch: int, limit_steps: int | None,
    world_size: int,
) -> None:
    """Refuse a checkpoint of an earlier blitz (one whose checkpoints did not record
    ``steps_per_epoch``) where it trained a last batch of one example that this one leaves out:
    its epochs had a step more, so its position and schedule do not carry over."""
    if "steps_per_epoch" in meta or int(meta.get("world_size", 1)) != world_size:
        return  # (another process count has other epochs anyway: resuming checks that elsewhere)
    earlier = -(-batches.per_rank // batches.batch_size)  # that blitz's count: the partial batch always kept
    if limit_steps:
        earlier = min(earlier, limit_steps)
    if earlier != steps_per_epoch:
        raise UsageError(
            f"This run was saved by an earlier blitz that trained a last batch of one example ({earlier} steps "
            f"per epoch); this one leaves that batch out ({steps_per_epoch}), so the run cannot be "
            "resumed exactly. Start a new run (this one's files stay as they are)."
        )


def check_process_count(meta: dict[str, Any], world_size: int) -> None:
    """Refuse to finish a partial epoch with another number of processes than started it.

    step_in_epoch counts each rank's steps through its share of the epoch's permutation: with
    another count the shares differ, and examples would be seen twice or the rest of the epoch
    skipped. From the end of an epoch any count may go on.
    """
    saved = int(meta.get("world_size", world_size))
    if int(meta["step_in_epoch"]) > 0 and saved != world_size:
        raise UsageError(
            f"This run stopped in the middle of epoch {meta['epoch']} with {saved} process(es), and would "
            f"resume with {world_size}: finish that epoch with the same count (--nproc-per-node x "
            f"--nnodes = {saved}), or resume from the end of an epoch."
        )


__all__ = ["EpochSoFar", "check_process_count", "check_resumable", "check_same_epoch_length"]
