"""The optimisation loop's state and its checkpoint file: saved atomically at each evaluation, and resumed
only by the run it belongs to (`run_identity`)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TypedDict

import torch

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..atomic import atomic_write_bytes
from .run_identity import check_resume


class Evaluation(TypedDict):
    """One evaluation of a run: its step, the mean loss since the previous one (None at step 0) and the
    early-stopping score (None for a run without one)."""

    step: int
    loss: float | None
    score: float | None


class LoopState(TypedDict):
    """Where a run stands: steps taken, the best score (None without a score) with its step and weights,
    evaluations since the score last rose, and every evaluation so far."""

    step: int
    best_score: float | None
    best_step: int
    best_state: dict[str, torch.Tensor]
    stale: int
    history: list[Evaluation]


class Checkpoint:
    """`folder / checkpoint.pt` of one run (`folder=None`: no checkpoints): the loop state, the adaptor's
    weights, Adam's state and the run's `identity` (`run_identity`). Only a `writer` saves (under data
    parallelism, rank 0)."""

    def __init__(self, folder: Path | None, identity: dict, writer: bool = True) -> None:
        self.path = folder / "checkpoint.pt" if folder is not None else None
        self.identity, self.writer = identity, writer

    def resume(self, adaptor: MatryoshkaAdaptor, adam: torch.optim.Optimizer) -> LoopState | None:
        """The saved state, with the saved weights and Adam's state loaded into `adaptor` and `adam`; None
        without a checkpoint file. `InputError` when the file records another run's identity."""
        if self.path is None or not self.path.is_file():
            return None
        saved = torch.load(self.path, map_location=adaptor.device, weights_only=True)
        check_resume(self.path, saved.get("identity"), self.identity)
        adaptor.load_state_dict(saved["adaptor"])
        adam.load_state_dict(saved["optimizer"])
        history = saved["history"]
        # checkpoints written before best_step was recorded: the earliest evaluation at the best score
        best_step = (
            saved["best_step"]
            if "best_step" in saved
            else min(h["step"] for h in history if h["score"] == saved["best_score"])
        )
        return {
            "step": saved["step"],
            "best_score": saved["best_score"],
            "best_step": best_step,
            "best_state": saved["best_state"],
            "stale": saved["stale"],
            "history": history,
        }

    def save(self, state: LoopState, adaptor: MatryoshkaAdaptor, adam: torch.optim.Optimizer) -> None:
        """Replace the checkpoint file with `state`, the weights and Adam's state (`atomic_write_bytes`: a
        crash leaves the previous checkpoint or this one); nothing without a folder or when not the writer."""
        if self.path is None or not self.writer:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = io.BytesIO()
        torch.save(
            {
                **state,
                "identity": self.identity,
                "adaptor": adaptor.state_dict(),
                "optimizer": adam.state_dict(),
            },
            payload,
        )
        atomic_write_bytes(self.path, payload.getvalue())
