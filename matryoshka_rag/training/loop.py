"""The optimisation loop shared by both stages: Adam steps, evaluations of an early-stopping score, the best
weights kept, checkpoints to resume from (`checkpoint`), and runs paused at their step budget to be continued
in memory (`Paused`)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adaptor.torch_module import MatryoshkaAdaptor
from .checkpoint import Checkpoint, Evaluation, LoopState
from .config import OptimiserConfig

MIN_GAIN = 1e-5  # an evaluation keeps new weights only when the score rose by more than this


@dataclass(frozen=True)
class Paused:
    """Where a run stopped, to continue it with a larger step budget (`optimise(..., paused=...)`): its loop
    state, its last weights (not the best ones it returned) and Adam's state."""

    state: LoopState
    weights: dict[str, torch.Tensor]
    adam: dict


@dataclass(frozen=True)
class LoopOutcome:
    """What a run did: its steps, the step of the weights kept (the first evaluation at the best score; a
    later tie keeps them), the best score (None without a score), every evaluation, and where it stopped
    (`paused`, to continue it)."""

    steps: int
    best_step: int
    best_score: float | None
    history: list[Evaluation]
    paused: Paused | None = None

    def best_until(self, step: int) -> float:
        """The best score of the evaluations up to `step` (the start's included): what the run had reached
        by then, whatever it did after (`ValueError` for a run without a score)."""
        scores = [h["score"] for h in self.history if h["step"] <= step and h["score"] is not None]
        if not scores:
            raise ValueError("a run without an early-stopping score has no best score")
        return max(scores)

    def scored(self) -> float:
        """`best_score` of a run with an early-stopping score (`ValueError` for a run without one)."""
        if self.best_score is None:
            raise ValueError("a run without an early-stopping score has no best score")
        return self.best_score

    def record(self) -> dict[str, object]:
        """`{steps, best_step, history}`, as `metadata["metrics"]` records them."""
        return {"steps": self.steps, "best_step": self.best_step, "history": self.history}


def optimise(
    adaptor: MatryoshkaAdaptor,
    loss_at: Callable[[int], torch.Tensor],
    score: Callable[[], float] | None,
    optimiser: OptimiserConfig,
    checkpoint_dir: Path | None,
    identity: dict,
    progress: bool,
    description: str,
    main_process: bool = True,
    paused: Paused | None = None,
) -> LoopOutcome:
    """Train `adaptor`'s MLP with Adam on `loss_at(step)` (a scalar loss) and return what the run did.

    Evaluates `score` (higher is better) every `optimiser.eval_every` steps, keeps the best weights, stops
    after `optimiser.patience` evaluations without gain or at `optimiser.max_steps`; `score=None` runs all
    `max_steps` and keeps the last weights. Only the `main_process` writes checkpoints (`checkpoint_dir /
    checkpoint.pt`, at each evaluation); each records `identity` (`run_identity`), and one recording another
    is refused with `InputError`. A `paused` run (an earlier outcome's `paused`, from the same start, loss and
    score) continues where it stopped, as if it had not stopped, unless a checkpoint resumes it. No host-device
    synchronisation between evaluations: the running loss stays on the device.
    """
    # fused on CUDA: one kernel, step counters on the device
    adam = torch.optim.Adam(
        adaptor.mlp.parameters(), lr=optimiser.lr, fused=adaptor.device.type == "cuda" or None
    )
    checkpoint = Checkpoint(checkpoint_dir, identity, writer=main_process)
    state = (
        checkpoint.resume(adaptor, adam) or continued(paused, adaptor, adam) or initial_state(adaptor, score)
    )
    bar = tqdm(
        total=optimiser.max_steps, initial=state["step"], desc=description, disable=not progress, leave=False
    )
    running = torch.zeros((), device=adaptor.device)
    since_eval = 0
    while state["step"] < optimiser.max_steps and state["stale"] < optimiser.patience:
        running += adam_step(adaptor, adam, loss_at, state["step"])
        since_eval += 1
        state["step"] += 1
        bar.update(1)
        if state["step"] % optimiser.eval_every == 0 or state["step"] == optimiser.max_steps:
            bar.set_postfix(evaluate(state, adaptor, score, running / since_eval))
            running.zero_()
            since_eval = 0
            checkpoint.save(state, adaptor, adam)
    bar.close()
    stopped = Paused(
        copy.deepcopy(state), copy.deepcopy(adaptor.state_dict()), copy.deepcopy(adam.state_dict())
    )
    if score is not None:
        adaptor.load_state_dict(state["best_state"])
    adaptor.eval()
    best_step = state["best_step"] if score is not None else state["step"]
    return LoopOutcome(state["step"], best_step, state["best_score"], state["history"], stopped)


def continued(
    paused: Paused | None, adaptor: MatryoshkaAdaptor, adam: torch.optim.Optimizer
) -> LoopState | None:
    """The state of the `paused` run, with its last weights and Adam's state loaded into `adaptor` and `adam`
    (None without one)."""
    if paused is None:
        return None
    adaptor.load_state_dict(paused.weights)
    adam.load_state_dict(paused.adam)
    return copy.deepcopy(paused.state)


def initial_state(adaptor: MatryoshkaAdaptor, score: Callable[[], float] | None) -> LoopState:
    """The state of a run at step 0: the start's score (None without `score`) is the best so far."""
    with torch.no_grad():
        initial = score() if score is not None else None
    return {
        "step": 0,
        "best_score": initial,
        "best_step": 0,
        "best_state": copy.deepcopy(adaptor.state_dict()),
        "stale": 0,
        "history": [{"step": 0, "loss": None, "score": initial}],
    }


def adam_step(
    adaptor: MatryoshkaAdaptor,
    adam: torch.optim.Optimizer,
    loss_at: Callable[[int], torch.Tensor],
    step: int,
) -> torch.Tensor:
    """One Adam step on `loss_at(step)` (bf16 autocast on CUDA); returns the loss, detached, as a float32
    scalar on the device (no host read)."""
    adaptor.train()
    with torch.autocast(adaptor.device.type, dtype=torch.bfloat16, enabled=adaptor.device.type == "cuda"):
        loss = loss_at(step)
    adam.zero_grad(set_to_none=True)
    loss.backward()
    adam.step()
    return loss.detach().float()


def evaluate(
    state: LoopState,
    adaptor: MatryoshkaAdaptor,
    score: Callable[[], float] | None,
    mean_loss: torch.Tensor,
) -> dict[str, str]:
    """Score `adaptor` at `state["step"]` and append the evaluation (with `mean_loss`, a scalar on the
    device, read here) to the history; the weights are kept as the best when the score rose by more than
    `MIN_GAIN`, else the evaluation counts as stale. Returns the progress bar's postfix."""
    adaptor.eval()
    with torch.no_grad():
        current = score() if score is not None else None
    loss = mean_loss.item()
    state["history"].append({"step": state["step"], "loss": loss, "score": current})
    postfix = {"loss": f"{loss:.4f}"}
    if current is None:
        return postfix
    best = state["best_score"]
    if best is None or current > best + MIN_GAIN:
        state["best_score"], state["best_step"], state["stale"] = current, state["step"], 0
        state["best_state"] = copy.deepcopy(adaptor.state_dict())
    else:
        state["stale"] += 1
    return postfix | {"score": f"{current:.4f}"}
