import numpy as np
import pytest
import torch

from mimlib import multi_input_mixup
from mimlib.errors import ConfigError
from mimlib.mixing import dirichlet_weights, mixing_indices


def test_each_mix_is_exactly_the_mean_of_its_k_members() -> None:
    x = torch.randn(16, 3, 8, 8)
    index = mixing_indices(16, 7, generator=torch.Generator().manual_seed(3))
    mixed = multi_input_mixup(x, 7, generator=torch.Generator().manual_seed(3))
    for i in range(16):
        expected = sum(x[index[j, i]] for j in range(7)) / 7
        torch.testing.assert_close(mixed[i], expected, rtol=0, atol=1e-6)


def test_every_row_of_indices_is_a_permutation_and_rows_differ() -> None:
    index = mixing_indices(50, 10, generator=torch.Generator().manual_seed(0))
    assert index.shape == (10, 50)
    for row in index:
        assert torch.equal(row.sort().values, torch.arange(50))
    assert len({tuple(r.tolist()) for r in index}) == 10


def test_permutations_are_independent_so_members_can_repeat() -> None:
    # for two independent uniform permutations of n items, P(perm1[i] == perm2[i]) = 1 / n
    n, draws = 8, 4000
    gen = torch.Generator().manual_seed(1)
    matches = sum(int((idx[0] == idx[1]).sum()) for idx in
                  (mixing_indices(n, 2, generator=gen) for _ in range(draws)))
    rate = matches / (n * draws)
    assert abs(rate - 1 / n) < 4 * np.sqrt((1 / n) * (1 - 1 / n) / (n * draws))
    # with k = n = 8 the chance that a mix has no repeated member is 8!/8^8 (0.24%)
    idx = mixing_indices(n, n, generator=gen)
    assert any(len(set(idx[:, i].tolist())) < n for i in range(n))


def test_k_equal_one_is_a_permutation_of_the_batch() -> None:
    x = torch.arange(10.0).view(10, 1)
    out = multi_input_mixup(x, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.flatten().sort().values, x.flatten())


def test_same_generator_state_reproduces_the_mix() -> None:
    x = torch.randn(32, 3, 4, 4)
    a = multi_input_mixup(x, 5, generator=torch.Generator().manual_seed(9))
    b = multi_input_mixup(x, 5, generator=torch.Generator().manual_seed(9))
    c = multi_input_mixup(x, 5, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("k", [0, -3, 2.5, "10", True, None])
def test_invalid_k_is_an_error(k: object) -> None:
    with pytest.raises(ConfigError, match="k"):
        multi_input_mixup(torch.zeros(4, 3), k)  # type: ignore[arg-type]


def test_unknown_weight_scheme_and_bad_alpha_are_errors() -> None:
    with pytest.raises(ConfigError, match="weights"):
        multi_input_mixup(torch.zeros(4, 3), 2, weights="softmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="alpha"):
        multi_input_mixup(torch.zeros(4, 3), 2, weights="dirichlet", alpha=0)


def test_dirichlet_weights_follow_the_dirichlet_moments() -> None:
    k, alpha = 4, 0.5
    w = dirichlet_weights(20000, k, alpha, generator=torch.Generator().manual_seed(0)).double()
    torch.testing.assert_close(w.sum(1), torch.ones(20000, dtype=torch.float64), atol=1e-6, rtol=0)
    # Var[w_i] = (1/k)(1 - 1/k) / (k alpha + 1)
    assert abs(w.mean().item() - 1 / k) < 1e-3
    assert abs(w.var(0).mean().item() - (1 / k) * (1 - 1 / k) / (k * alpha + 1)) < 4e-3


def test_dirichlet_mix_is_the_weighted_sum_with_the_same_draws() -> None:
    x = torch.randn(12, 2)
    g = torch.Generator().manual_seed(4)
    mixed = multi_input_mixup(x, 3, weights="dirichlet", alpha=2.0, generator=g)
    g = torch.Generator().manual_seed(4)
    index = mixing_indices(12, 3, generator=g)
    w = dirichlet_weights(12, 3, 2.0, generator=g)
    expected = (w.T[..., None] * x[index]).sum(0)
    torch.testing.assert_close(mixed, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_mixing_runs_on_the_inputs_device() -> None:
    x = torch.randn(64, 3, 32, 32, device="cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    assert multi_input_mixup(x, 10, generator=gen).device.type == "cuda"
