import numpy as np
import pytest

from caviar_napari.core.grid import A_to_px, as_pair, px_to_A


def test_pixel_zero_sits_at_origin_without_half_pixel_offset():
    origin = (-3.0, 5.0)
    np.testing.assert_allclose(px_to_A([0, 0], origin, (0.1, 0.2)), origin)
    np.testing.assert_allclose(px_to_A([10, 5], origin, (0.1, 0.2)), (-2.0, 6.0))


def test_round_trip_and_pairs():
    rng = np.random.default_rng(0)
    px = rng.uniform(0, 50, (7, 3, 2))
    back = A_to_px(px_to_A(px, (1.0, -2.0), 0.3), (1.0, -2.0), 0.3)
    np.testing.assert_allclose(back, px)
    assert as_pair(0.5) == (0.5, 0.5)
    assert as_pair([0.1, 0.2]) == (0.1, 0.2)
    with pytest.raises(ValueError, match="pixel"):
        as_pair([1, 2, 3], "pixel_size_A")
