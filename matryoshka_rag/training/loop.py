"""The optimisation loop shared by both stages: Adam steps, evaluations of an early-stopping score, the best
weights kept, and checkpoints to resume from (`checkpoint`)."""

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
class LoopOutcome:
    """What a run did: its steps, the step of the weights kept (the first evaluation at the best score; a
    later tie keeps them), the best score (None without a score) and every evaluation."""

    steps: int
    best_step: int
    best_score: float | None
    history: list[Evaluation]

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
) -> LoopOutcome:
    """Train `adaptor`'s MLP with Adam on `loss_at(step)` (a scalar loss) and return what the run did.

    Evaluates `score` (higher is better) every `optimiser.eval_every` steps, keeps the best weights, stops
    after `optimiser.patience` evaluations without gain or at `optimiser.max_steps`; `score=None` runs all
    `max_steps` and keeps the last weights. Only the `main_process` writes checkpoints (`checkpoint_dir /
    checkpoint.pt`, at each evaluation); each records `identity` (`run_identity`), and one recording another
    is refused with `InputError`. No host-device synchronisation between evaluations: the running loss stays
    on the device.
    """
    # fused on CUDA: one kernel, step counters on the device
    adam = torch.optim.Adam(
        adaptor.mlp.parameters(), lr=optimiser.lr, fused=adaptor.device.type == "cuda" or None
    )
    checkpoint = Checkpoint(checkpoint_dir, identity, writer=main_process)
    state = checkpoint.resume(adaptor, adam) or initial_state(adaptor, score)
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
    if score is not None:
        adaptor.load_state_dict(state["best_state"])
    adaptor.eval()
    best_step = state["best_step"] if score is not None else state["step"]
    return LoopOutcome(state["step"], best_step, state["best_score"], state["history"])


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
