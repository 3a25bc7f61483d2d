"""Data-parallel training optimises the single-process objective: the in-batch candidates of the listwise
and pair losses are every rank's anchors, and the gradient after DDP's all-reduce is the gradient of the
loss on the whole global batch.

Run as a script under torchrun, this file is the worker of the two-process gloo test.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

from matryoshka_rag import UnsupervisedConfig
from matryoshka_rag.losses import listwise_distillation_loss, pairwise_similarity_loss
from matryoshka_rag.training.distributed import LOCAL, Context, setup
from matryoshka_rag.training.streaming import HostCorpus
from matryoshka_rag.training.unsupervised import new_adaptor
from matryoshka_rag.training.unsupervised_objective import UnsupervisedObjective, neighbour_table

DIMS = (2, 3, 6)
CPU = torch.device("cpu")


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.dot(a, b) / (a.norm() * b.norm())


@pytest.fixture
def batch():
    """A global batch of 7 anchors `(7, 6)` with 2 neighbours each, in float64."""
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(7, 6, generator=generator, dtype=torch.float64)
    adapted = base + 0.3 * torch.randn(7, 6, generator=generator, dtype=torch.float64)
    neighbours = torch.randn(7, 2, 6, generator=generator, dtype=torch.float64)
    adapted_neighbours = neighbours + 0.3 * torch.randn(7, 2, 6, generator=generator, dtype=torch.float64)
    return base, neighbours, adapted, adapted_neighbours


def _listwise(batch, rows: slice | None = None, temperature: float = 0.05, **kwargs) -> torch.Tensor:
    base, neighbours, adapted, adapted_neighbours = batch
    rows = rows or slice(None)
    return listwise_distillation_loss(
        base[rows], neighbours[rows], adapted[rows], adapted_neighbours[rows], DIMS, temperature, **kwargs
    )


def _before_candidates(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The listwise and pair ("mean") losses as computed before candidates could be given."""
    base, neighbours, adapted, adapted_neighbours = batch
    eye = torch.eye(len(base), dtype=torch.bool)

    def logits(anchors, anchor_neighbours):
        in_batch = F.normalize(anchors, dim=-1) @ F.normalize(anchors, dim=-1).T
        rows = torch.einsum(
            "nd,ncd->nc", F.normalize(anchors, dim=-1), F.normalize(anchor_neighbours, dim=-1)
        )
        return torch.cat([in_batch.masked_fill(eye, -1e4), rows], dim=1) / 0.05

    target = F.log_softmax(logits(base, neighbours), dim=1)
    listwise, pair = 0, 0
    for m in DIMS:
        student = F.log_softmax(logits(adapted[:, :m], adapted_neighbours[:, :, :m]), dim=1)
        listwise += F.kl_div(student, target, log_target=True, reduction="batchmean")
        cosines = F.normalize(adapted[:, :m], dim=-1) @ F.normalize(adapted[:, :m], dim=-1).T
        pair += (F.normalize(base, dim=-1) @ F.normalize(base, dim=-1).T - cosines).abs()[~eye].mean()
    return listwise, pair


def test_explicit_local_candidates_are_the_default_and_the_previous_loss(batch):
    base, _, adapted, _ = batch
    local = {"candidates_base": base, "candidates_adapted": adapted, "offset": 0}
    assert torch.equal(_listwise(batch, **local), _listwise(batch))
    for reduction in ("mean", "sum"):
        assert torch.equal(
            pairwise_similarity_loss(base, adapted, DIMS, reduction, **local),
            pairwise_similarity_loss(base, adapted, DIMS, reduction),
        )
    listwise, pair = _before_candidates(batch)
    torch.testing.assert_close(_listwise(batch, **local), listwise, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        pairwise_similarity_loss(base, adapted, DIMS, **local), pair, rtol=1e-12, atol=0
    )


def test_candidates_match_a_loop_over_anchors(batch):
    """Anchors 2..4 of the batch against every other batch item (and their own neighbours)."""
    base, neighbours, adapted, adapted_neighbours = batch
    t, anchors = 0.05, range(2, 5)
    given = {"candidates_base": base, "candidates_adapted": adapted, "offset": 2}
    listwise = 0.0
    for m in DIMS:
        for i in anchors:
            others = [j for j in range(7) if j != i]
            teacher = torch.stack(
                [cos(base[i], base[j]) for j in others] + [cos(base[i], v) for v in neighbours[i]]
            )
            student = torch.stack(
                [cos(adapted[i, :m], adapted[j, :m]) for j in others]
                + [cos(adapted[i, :m], v[:m]) for v in adapted_neighbours[i]]
            )
            p, log_p, log_q = (
                F.softmax(teacher / t, 0),
                F.log_softmax(teacher / t, 0),
                F.log_softmax(student / t, 0),
            )
            listwise += float((p * (log_p - log_q)).sum()) / len(anchors)
    assert _listwise(batch, slice(2, 5), **given).item() == pytest.approx(listwise)
    pair = sum(
        float(abs(cos(base[i], base[j]) - cos(adapted[i, :m], adapted[j, :m])))
        for m in DIMS
        for i in anchors
        for j in range(7)
        if j != i
    )
    got = pairwise_similarity_loss(base[2:5], adapted[2:5], DIMS, "sum", **given)
    assert got.item() == pytest.approx(pair)
    got = pairwise_similarity_loss(base[2:5], adapted[2:5], DIMS, **given)
    assert got.item() == pytest.approx(pair / (3 * 6))


def test_parts_of_a_batch_weighted_by_size_add_up_to_the_whole(batch):
    """Unequal parts (3 + 4 anchors) with the whole batch as candidates: the losses weighted by n_part / N
    and their gradients add up to the whole batch's (what W ranks under DDP compute)."""
    base, neighbours, adapted, adapted_neighbours = batch
    adapted = adapted.clone().requires_grad_(True)
    parts = (slice(0, 3), slice(3, 7))
    given = [{"candidates_base": base, "candidates_adapted": adapted, "offset": p.start} for p in parts]
    whole_batch = (base, neighbours, adapted, adapted_neighbours)
    whole = {
        "listwise": _listwise(whole_batch),
        "pair": pairwise_similarity_loss(base, adapted, DIMS),
        "pair sum": pairwise_similarity_loss(base, adapted, DIMS, "sum"),
    }
    weights = [(p.stop - p.start) / 7 for p in parts]
    split = {
        "listwise": sum(w * _listwise(whole_batch, p, **g) for w, p, g in zip(weights, parts, given)),
        "pair": sum(
            w * pairwise_similarity_loss(base[p], adapted[p], DIMS, **g)
            for w, p, g in zip(weights, parts, given)
        ),
        "pair sum": sum(
            pairwise_similarity_loss(base[p], adapted[p], DIMS, "sum", **g) for p, g in zip(parts, given)
        ),
    }
    for name in whole:
        (whole_grad,) = torch.autograd.grad(whole[name], adapted)
        (split_grad,) = torch.autograd.grad(split[name], adapted)
        torch.testing.assert_close(split[name], whole[name], rtol=1e-12, atol=0, msg=name)
        torch.testing.assert_close(split_grad, whole_grad, rtol=1e-10, atol=1e-12, msg=name)
        assert whole_grad.abs().max() > 0


def test_candidates_must_hold_the_anchors(batch):
    base, _, adapted, _ = batch
    with pytest.raises(ValueError, match="together"):
        pairwise_similarity_loss(base, adapted, DIMS, candidates_base=base)
    with pytest.raises(ValueError, match="together"):
        _listwise(batch, candidates_adapted=adapted)
    with pytest.raises(ValueError, match="must hold"):
        pairwise_similarity_loss(
            base, adapted, DIMS, candidates_base=base, candidates_adapted=adapted, offset=1
        )
    with pytest.raises(ValueError, match="must hold"):
        _listwise(batch, slice(0, 3), candidates_base=base[:2], candidates_adapted=adapted[:2])


def test_gather_batch_is_the_identity_when_not_distributed(batch):
    base = batch[0]
    gathered, offset = LOCAL.gather_batch(base, grad=True)
    assert gathered is base and offset == 0


# Two gloo processes against one process: the adaptor's gradients on a global batch of 64 or 63 anchors.

CASES = [(objective, size) for objective in ("listwise", "paper") for size in (64, 63)]
STEP = 1
ADAPTOR_DIMS = (32, 384)


def _config(objective: str, batch_size: int) -> UnsupervisedConfig:
    return UnsupervisedConfig(objective=objective, batch_size=batch_size, holdout=30)


def _step(
    vectors: np.ndarray, config: UnsupervisedConfig, context: Context
) -> tuple[float, list[torch.Tensor]]:
    """Loss and MLP gradients of training step `STEP` (this rank's share under DDP) from a fixed adaptor."""
    adaptor = new_adaptor(vectors, ADAPTOR_DIMS, config, "test")
    with torch.no_grad():  # a non-zero last layer, so that every parameter has a gradient
        last = adaptor.mlp[-1]
        last.weight.add_(0.02 * torch.randn(last.weight.shape, generator=torch.Generator().manual_seed(1)))
    table, _ = neighbour_table(vectors, config, CPU)
    host = HostCorpus(vectors, CPU)
    try:
        objective = UnsupervisedObjective(host, table, ADAPTOR_DIMS, config, context)
        model = context.wrap(adaptor, CPU)  # held until after backward: DDP's reducer lives in it
        loss = objective.loss_at(adaptor, STEP, model=model)
        loss.backward()
    finally:
        host.close()
    return loss.item(), [parameter.grad.clone() for parameter in adaptor.mlp.parameters()]


GATHER_WEIGHTS = torch.arange(10, dtype=torch.float64).reshape(5, 2)


def _gather(context: Context) -> dict:
    """Rank r holds 3 - r rows; they are gathered without sizes, then with sizes and autograd, and every
    rank back-propagates `sum(gathered * GATHER_WEIGHTS)`."""
    rows = (torch.arange(3.0 - context.rank, dtype=torch.float64)[:, None] + 10 * context.rank).repeat(1, 2)
    rows.requires_grad_(True)
    unknown, unknown_offset = context.gather_batch(rows.detach())
    known, offset = context.gather_batch(rows, (3, 2), grad=True)
    (known * GATHER_WEIGHTS).sum().backward()
    return {
        "unknown": unknown,
        "known": known.detach(),
        "offsets": (unknown_offset, offset),
        "grad": rows.grad,
    }


def _worker(corpus: Path, out: Path) -> None:
    context, _ = setup("cpu")
    torch.save(_gather(context), out / f"gather-{context.rank}.pt")
    vectors = np.load(corpus)
    for objective, size in CASES:
        torch.save(
            _step(vectors, _config(objective, size), context), out / f"{objective}-{size}-{context.rank}.pt"
        )
    dist.barrier()  # no rank tears the group down while another still talks to it
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_steps(tmp_path_factory, scifact_vectors) -> Path:
    """One torchrun launch of 2 CPU ranks computing every case's step; their results, per rank."""
    out = tmp_path_factory.mktemp("ddp")
    # more rows than dims: the PCA start is then unique, so the ranks (1 thread) and this process agree
    np.save(out / "corpus.npy", scifact_vectors)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += [__file__, str(out / "corpus.npy"), str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_gather_batch_across_two_processes(ddp_steps):
    """Shares of 3 and 2 rows: both ranks see all 5 in rank order, and each row's gradient is the sum of
    both ranks' gradients for it."""
    expected = torch.tensor([0.0, 1, 2, 10, 11], dtype=torch.float64)[:, None].repeat(1, 2)
    for rank, (start, stop) in enumerate(((0, 3), (3, 5))):
        got = torch.load(ddp_steps / f"gather-{rank}.pt")
        assert torch.equal(got["unknown"], expected) and torch.equal(got["known"], expected)
        assert got["offsets"] == (start, start)
        assert torch.equal(got["grad"], 2 * GATHER_WEIGHTS[start:stop])


@pytest.mark.parametrize(("objective", "batch_size"), CASES)
def test_data_parallel_gradient_is_the_single_process_gradient(ddp_steps, objective, batch_size):
    """After DDP's all-reduce, both ranks hold the gradient of one process's loss on the global batch
    (64 anchors: 32 + 32; 63: 32 + 31), and the ranks' losses average to that loss."""
    vectors = np.load(ddp_steps / "corpus.npy")
    loss, gradients = _step(vectors, _config(objective, batch_size), LOCAL)
    ranks = [torch.load(ddp_steps / f"{objective}-{batch_size}-{rank}.pt") for rank in (0, 1)]
    for _, rank_gradients in ranks:
        for got, want in zip(rank_gradients, gradients, strict=True):
            assert want.abs().max() > 0
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))
    assert np.mean([rank_loss for rank_loss, _ in ranks]) == pytest.approx(loss, rel=1e-5)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("objective=listwse", "objective must be one of 'listwise', 'paper'; got 'listwse'"),
        ("batch_size=abc", "--set batch_size=abc: expected an integer"),
        ("batch_size=0", "batch_size must be an integer >= 1; got 0"),
        ("temperature=-1", "temperature must be a finite number > 0; got -1.0"),
        ("max_steps", "--set 'max_steps': expected field=value"),
    ],
)
def test_entry_point_refuses_bad_settings_in_one_line(tmp_path, capsys, setting, message):
    """Checked before the corpus is opened (it does not exist, so a later check would report that)."""
    from matryoshka_rag.training.torchrun import main

    assert main([str(tmp_path / "corpus.npy"), str(tmp_path / "adaptor"), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "adaptor").exists()


def test_the_entry_point_command_refuses_a_bad_setting_in_one_line(tmp_path):
    """`python -m matryoshka_rag.training.torchrun` (the command torchrun runs) refuses a bad setting in one
    line, exit status 2."""
    command = [sys.executable, "-m", "matryoshka_rag.training.torchrun", str(tmp_path / "corpus.npy")]
    command += [str(tmp_path / "adaptor"), "--set", "batch_size=0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "batch_size must be an integer >= 1; got 0" in done.stderr
