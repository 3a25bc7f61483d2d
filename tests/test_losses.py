"""Each loss against a direct loop over the paper's equation on tiny inputs."""

import math

import pytest
import torch

from matryoshka_rag.losses import (
    graded_softmax_loss,
    listwise_distillation_loss,
    multi_positive_softmax_loss,
    pairwise_rank_loss,
    pairwise_similarity_loss,
    prefix_self_distillation_loss,
    reconstruction_loss,
    topk_similarity_loss,
)
from matryoshka_rag.losses.similarity import cosine_matrix, prefix_cosine_matrices

DIMS = (2, 3, 6)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


@pytest.fixture
def tiny():
    generator = torch.Generator().manual_seed(0)
    base = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    adapted = base + 0.3 * torch.randn(5, 6, generator=generator, dtype=torch.float64)
    neighbours = torch.tensor([[1, 2], [0, 3], [4, 1], [2, 0], [3, 2]])
    return base, adapted, neighbours


def test_pair_loss_matches_paper_sum(tiny):
    base, adapted, _ = tiny
    expected = sum(
        abs(cos(base[i], base[j]) - cos(adapted[i, :m], adapted[j, :m]))
        for m in DIMS
        for i in range(5)
        for j in range(5)
        if i != j
    )
    assert pairwise_similarity_loss(base, adapted, DIMS, reduction="sum").item() == pytest.approx(expected)
    assert pairwise_similarity_loss(base, adapted, DIMS).item() == pytest.approx(expected / 20)


def test_topk_loss_matches_paper_sum(tiny):
    base, adapted, nb = tiny
    expected = sum(
        abs(cos(base[i], base[j]) - cos(adapted[i, :m], adapted[j, :m]))
        for m in DIMS
        for i in range(5)
        for j in nb[i]
    )
    got = topk_similarity_loss(base, base[nb], adapted, adapted[nb], DIMS, reduction="sum")
    assert got.item() == pytest.approx(expected)
    assert topk_similarity_loss(base, base[nb], adapted, adapted[nb], DIMS).item() == pytest.approx(
        expected / 10
    )


def test_reconstruction_loss_matches_paper_sum(tiny):
    base, adapted, _ = tiny
    expected = sum(float((base[i] - adapted[i]).abs().sum()) for i in range(5))
    assert reconstruction_loss(base, adapted, reduction="sum").item() == pytest.approx(expected)
    assert reconstruction_loss(base, adapted).item() == pytest.approx(expected / 30)


def test_similarity_losses_vanish_when_prefixes_keep_cosines(tiny):
    base, _, nb = tiny
    # An embedding whose only non-zero components are the first two keeps all its cosines at every m >= 2.
    flat = torch.zeros_like(base)
    flat[:, :2] = base[:, :2]
    assert pairwise_similarity_loss(flat, flat, DIMS).item() == pytest.approx(0, abs=1e-12)
    assert topk_similarity_loss(flat, flat[nb], flat, flat[nb], DIMS).item() == pytest.approx(0, abs=1e-12)
    assert listwise_distillation_loss(flat, flat[nb], flat, flat[nb], DIMS).item() == pytest.approx(
        0, abs=1e-9
    )
    assert pairwise_similarity_loss(base, base, DIMS).item() > 0.01  # truncation does change cosines


def test_rank_loss_matches_paper_sum():
    generator = torch.Generator().manual_seed(1)
    queries = torch.randn(2, 6, generator=generator, dtype=torch.float64)
    docs = torch.randn(2, 4, 6, generator=generator, dtype=torch.float64)
    grades = torch.tensor([[2.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    expected, pairs = 0.0, 0
    for m in DIMS:
        for i in range(2):
            for j in range(4):
                for k in range(4):
                    if mask[i, j] and mask[i, k] and grades[i, j] > grades[i, k]:
                        s_ij, s_ik = cos(queries[i, :m], docs[i, j, :m]), cos(queries[i, :m], docs[i, k, :m])
                        expected += float(grades[i, j] - grades[i, k]) * math.log1p(math.exp(s_ik - s_ij))
                        pairs += m == DIMS[0]
    assert pairwise_rank_loss(queries, docs, grades, mask, DIMS, reduction="sum").item() == pytest.approx(
        expected
    )
    assert pairwise_rank_loss(queries, docs, grades, mask, DIMS).item() == pytest.approx(expected / pairs)


@pytest.fixture
def graded():
    """Two queries, five candidate documents, graded relevance (query 0: three relevant, query 1: one)."""
    generator = torch.Generator().manual_seed(2)
    queries = torch.randn(2, 6, generator=generator, dtype=torch.float64)
    docs = torch.randn(5, 6, generator=generator, dtype=torch.float64)
    grades = torch.tensor([[2.0, 1.0, 0, 0, 1.0], [0, 0, 0, 1.0, 0]], dtype=torch.float64)
    return queries, docs, grades


def test_graded_softmax_loss_matches_loop(graded):
    queries, docs, grades = graded
    t = 0.05
    expected = 0.0
    for m in DIMS:
        for i in range(2):
            logits = [cos(queries[i, :m], docs[j, :m]) / t for j in range(5)]
            log_z = math.log(sum(math.exp(x) for x in logits))
            total = float(grades[i].sum())
            expected -= sum(float(grades[i, j]) / total * (logits[j] - log_z) for j in range(5)) / 2
    assert graded_softmax_loss(queries, docs, grades, DIMS, t).item() == pytest.approx(expected)


def test_multi_positive_softmax_loss_matches_loop(graded):
    queries, docs, grades = graded
    t = 0.1
    expected = 0.0
    for m in DIMS:
        for i in range(2):
            logits = [cos(queries[i, :m], docs[j, :m]) / t for j in range(5)]
            negatives = sum(math.exp(logits[j]) for j in range(5) if grades[i, j] == 0)
            total = float(grades[i].sum())
            for p in range(5):
                if grades[i, p] > 0:
                    probability = math.exp(logits[p]) / (math.exp(logits[p]) + negatives)
                    expected -= float(grades[i, p]) / total * math.log(probability) / 2
    assert multi_positive_softmax_loss(queries, docs, grades, DIMS, t).item() == pytest.approx(expected)


def test_multi_positive_softmax_is_the_graded_softmax_with_one_positive():
    generator = torch.Generator().manual_seed(4)
    queries = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    docs = torch.randn(7, 6, generator=generator, dtype=torch.float64)
    grades = torch.zeros(3, 7, dtype=torch.float64)
    grades[0, 2], grades[1, 5], grades[2, 0] = 1.0, 2.0, 1.0
    one = multi_positive_softmax_loss(queries, docs, grades, DIMS, 0.05).item()
    assert one == pytest.approx(graded_softmax_loss(queries, docs, grades, DIMS, 0.05).item())
    grades[0, 3] = 1.0  # a second positive: no longer counted as a negative of the first
    assert multi_positive_softmax_loss(queries, docs, grades, DIMS, 0.05).item() != pytest.approx(
        graded_softmax_loss(queries, docs, grades, DIMS, 0.05).item()
    )


def test_prefix_self_distillation_loss_matches_loop():
    generator = torch.Generator().manual_seed(5)
    queries = torch.randn(2, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    docs = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    t = 0.1

    def distribution(i, m):
        logits = [cos(queries[i, :m].detach(), docs[j, :m]) / t for j in range(4)]
        z = sum(math.exp(v) for v in logits)
        return [math.exp(v) / z for v in logits]

    expected = 0.0
    for m in DIMS[:-1]:  # the full dim (6) teaches and adds nothing
        for i in range(2):
            teacher, student = distribution(i, 6), distribution(i, m)
            expected += sum(p * math.log(p / q) for p, q in zip(teacher, student)) / 2
    loss = prefix_self_distillation_loss(queries, docs, DIMS, t)
    assert loss.item() == pytest.approx(expected)
    # the teacher is detached: the gradient is the students' alone
    loss.backward()
    student = queries.detach().clone().requires_grad_(True)

    def log_probs(q, m):
        return torch.log_softmax(cosine_matrix(q[:, :m], docs[:, :m]) / t, dim=1)

    teacher = log_probs(queries.detach(), 6)
    students = [log_probs(student, m) for m in DIMS[:-1]]
    sum((teacher.exp() * (teacher - s)).sum() / 2 for s in students).backward()
    assert torch.allclose(queries.grad, student.grad)


def test_prefix_self_distillation_is_zero_when_prefixes_hold_everything():
    generator = torch.Generator().manual_seed(6)
    queries, docs = torch.zeros(3, 6, dtype=torch.float64), torch.zeros(5, 6, dtype=torch.float64)
    queries[:, :2] = torch.randn(3, 2, generator=generator, dtype=torch.float64)
    docs[:, :2] = torch.randn(5, 2, generator=generator, dtype=torch.float64)
    assert prefix_self_distillation_loss(queries, docs, DIMS, 0.05).item() == pytest.approx(0.0, abs=1e-12)
    queries[:, 4] = 1.0  # the full vectors now rank differently from their 2- and 3-dim prefixes
    assert prefix_self_distillation_loss(queries, docs, DIMS, 0.05).item() > 1e-3


def test_listwise_loss_matches_loop(tiny):
    base, adapted, nb = tiny
    t = 0.05

    def distribution(x, i, m):
        candidates = [j for j in range(5) if j != i] + nb[i].tolist()
        logits = [cos(x[i, :m], x[j, :m]) / t for j in candidates]
        z = sum(math.exp(v) for v in logits)
        return [math.exp(v) / z for v in logits]

    expected = 0.0
    for m in DIMS:
        for i in range(5):
            p, q = distribution(base, i, 6), distribution(adapted, i, m)
            expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) / 5
    got = listwise_distillation_loss(base, base[nb], adapted, adapted[nb], DIMS, t)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_losses_give_gradients_to_the_adapted_side(tiny):
    base, adapted, nb = tiny
    adapted = adapted.clone().requires_grad_(True)
    loss = listwise_distillation_loss(base, base[nb], adapted, adapted[nb], DIMS) + pairwise_similarity_loss(
        base, adapted, DIMS
    )
    loss.backward()
    assert adapted.grad is not None and adapted.grad.abs().sum() > 0


def test_prefix_cosine_matrices_match_a_loop_of_cosine_matrices():
    """Block by block with running norms, the same scaled cosines and gradients as one `cosine_matrix` per
    prefix (a zero prefix clamped as `F.normalize` clamps it), in the order the dims are given."""
    generator = torch.Generator().manual_seed(3)
    a = torch.randn(5, 48, generator=generator)
    b = torch.randn(7, 48, generator=generator)
    a[2, :16] = 0.0  # a row whose first prefix is all zeros
    dims = (32, 8, 48, 16)
    a_loop, b_loop = a.clone().requires_grad_(), b.clone().requires_grad_()
    a_blocks, b_blocks = a.clone().requires_grad_(), b.clone().requires_grad_()
    loop = [cosine_matrix(a_loop[:, :m], b_loop[:, :m]) / 0.05 for m in dims]
    blocks = prefix_cosine_matrices(a_blocks, b_blocks, dims, 1 / 0.05)
    for expected, got in zip(loop, blocks):
        torch.testing.assert_close(got, expected)
    weights = torch.randn(len(dims), 5, 7, generator=generator)
    (weights * torch.stack(loop)).sum().backward()
    (weights * torch.stack(blocks)).sum().backward()
    torch.testing.assert_close(a_blocks.grad, a_loop.grad)
    torch.testing.assert_close(b_blocks.grad, b_loop.grad)
