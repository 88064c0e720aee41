import numpy as np
import pytest

from utils.experiment import InputError
from utils.synergy import (
    OtherSamplePartners,
    PairedPartners,
    TemplatePartners,
    draw_unpaired_partners,
    training_partners,
)


def test_unpaired_draw_is_never_the_sample_itself_and_covers_the_pool():
    rng = np.random.default_rng(0)
    positions = np.repeat(np.arange(7), 400)
    partners = draw_unpaired_partners(positions, 7, rng)
    assert not np.any(partners == positions)
    for position in range(7):
        seen = set(partners[positions == position])
        assert seen == set(range(7)) - {position}


def test_unpaired_draw_is_roughly_uniform():
    partners = draw_unpaired_partners(np.zeros(60_000, dtype=int), 4, np.random.default_rng(1))
    counts = np.bincount(partners, minlength=4)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / 60_000, 1 / 3, atol=0.01)


def test_partner_rules_return_teacher_keys():
    keys = np.array([10, 20, 30])
    other = OtherSamplePartners(keys, np.random.default_rng(0)).draw(np.array([0, 1, 2, 0]))
    assert set(other) <= {10, 20, 30} and other[0] != 10 and other[1] != 20
    assert list(PairedPartners(keys).draw(np.array([2, 0]))) == [30, 10]
    template = TemplatePartners(np.arange(6), np.random.default_rng(0)).draw(np.zeros(500, dtype=int))
    assert set(template) == set(range(6))


def test_training_partners_follow_the_pairing_option():
    keys, rng = np.array([10, 20, 30]), np.random.default_rng(0)
    assert isinstance(training_partners("paired", keys, None, rng), PairedPartners)
    assert isinstance(training_partners("unpaired", keys, None, rng), OtherSamplePartners)
    templates = training_partners("unpaired", keys, np.arange(6), rng)
    assert isinstance(templates, TemplatePartners) and list(templates.possible_keys()) == list(range(6))
    assert isinstance(training_partners("paired", keys, np.arange(6), rng), PairedPartners)  # paired wins


def test_draws_are_reproducible_per_seed():
    a = draw_unpaired_partners(np.arange(50), 50, np.random.default_rng(3))
    b = draw_unpaired_partners(np.arange(50), 50, np.random.default_rng(3))
    assert np.array_equal(a, b)


def test_a_pool_of_one_cannot_be_unpaired():
    with pytest.raises(InputError, match="at least 2"):
        draw_unpaired_partners(np.array([0]), 1, np.random.default_rng(0))
