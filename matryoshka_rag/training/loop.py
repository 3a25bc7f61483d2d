"""The optimisation loop shared by both stages: Adam steps, evaluations of an early-stopping score, the best
weights kept, and checkpoints to resume from."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..adaptor.torch_module import MatryoshkaAdaptor
from .config import OptimiserConfig
from .run_identity import check_resume


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
) -> dict:
    """Train `adaptor`'s MLP with Adam on `loss_at(step)` (a scalar loss) and return the history.

    Evaluates `score` (higher is better) every `optimiser.eval_every` steps, keeps the best weights, stops
    after `optimiser.patience` evaluations without gain or at `optimiser.max_steps`; `score=None` runs all
    `max_steps` and keeps the last weights. Only the `main_process` writes checkpoints (`checkpoint_dir /
    checkpoint.pt`, at each evaluation); each records `identity` (`run_identity`), and one recording another
    is refused with `InputError`. No host-device synchronisation between evaluations: the running loss stays
    on the device.

    Returns `{steps, best_step (the step of the weights kept), best_score, history: [{step, loss, score}]}`.
    """
    lr, max_steps, eval_every, patience = (
        optimiser.lr,
        optimiser.max_steps,
        optimiser.eval_every,
        optimiser.patience,
    )
    # fused on CUDA: one kernel, step counters on the device
    adam = torch.optim.Adam(adaptor.mlp.parameters(), lr=lr, fused=adaptor.device.type == "cuda" or None)
    autocast = adaptor.device.type == "cuda"
    checkpoint = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=adaptor.device, weights_only=True)
        check_resume(checkpoint, saved.get("identity"), identity)
        adaptor.load_state_dict(saved["adaptor"])
        adam.load_state_dict(saved["optimizer"])
        state = {key: saved[key] for key in ("step", "best_score", "best_state", "stale", "history")}
        # checkpoints written before best_step was recorded: the earliest evaluation at the best score
        state["best_step"] = (
            saved["best_step"]
            if "best_step" in saved
            else min(h["step"] for h in state["history"] if h["score"] == state["best_score"])
        )
    else:
        with torch.no_grad():
            initial = score() if score is not None else None
        state = {
            "step": 0,
            "best_score": initial,
            "best_step": 0,
            "best_state": copy.deepcopy(adaptor.state_dict()),
            "stale": 0,
            "history": [{"step": 0, "loss": None, "score": initial}],
        }
    bar = tqdm(total=max_steps, initial=state["step"], desc=description, disable=not progress, leave=False)
    running = torch.zeros((), device=adaptor.device)
    since_eval = 0
    while state["step"] < max_steps and state["stale"] < patience:
        adaptor.train()
        with torch.autocast(adaptor.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_at(state["step"])
        adam.zero_grad(set_to_none=True)
        loss.backward()
        adam.step()
        running += loss.detach().float()
        since_eval += 1
        state["step"] += 1
        bar.update(1)
        if state["step"] % eval_every == 0 or state["step"] == max_steps:
            adaptor.eval()
            with torch.no_grad():
                current = score() if score is not None else None
            mean_loss = (running / since_eval).item()
            running.zero_()
            since_eval = 0
            state["history"].append({"step": state["step"], "loss": mean_loss, "score": current})
            postfix = {"loss": f"{mean_loss:.4f}"}
            if current is not None:
                postfix["score"] = f"{current:.4f}"
                if current > state["best_score"] + 1e-5:
                    state.update(
                        best_score=current,
                        best_step=state["step"],
                        best_state=copy.deepcopy(adaptor.state_dict()),
                        stale=0,
                    )
                else:
                    state["stale"] += 1
            bar.set_postfix(**postfix)
            if checkpoint is not None and main_process:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {
                        **state,
                        "identity": identity,
                        "adaptor": adaptor.state_dict(),
                        "optimizer": adam.state_dict(),
                    },
                    checkpoint.with_suffix(".tmp"),
                )
                os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
    bar.close()
    if score is not None:
        adaptor.load_state_dict(state["best_state"])
    adaptor.eval()
    return {
        "steps": state["step"],
        # the step of the weights kept: the first evaluation at the best score (a later tie keeps them)
        "best_step": state["best_step"] if score is not None else state["step"],
        "best_score": state["best_score"],
        "history": state["history"],
    }
