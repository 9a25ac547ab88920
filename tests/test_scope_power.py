"""The Yeo-Johnson transform the scope gate's image part uses (pneumo_batch.scope.power)."""

import numpy as np
from scipy import stats

from pneumo_batch.scope.power import LAMBDA_RANGE, fit_yeo_johnson, yeo_johnson


def test_the_transform_is_the_published_one_on_both_sides_of_zero():
    values = np.random.default_rng(0).normal(scale=3.0, size=(200, 1))
    for exponent in (0.0, 0.3, 1.0, 1.7, 2.0):
        expected = stats.yeojohnson(values[:, 0], lmbda=exponent)
        np.testing.assert_allclose(yeo_johnson(values, np.array([exponent]))[:, 0], expected, rtol=1e-12, atol=1e-12)


def test_the_fitted_exponent_is_the_maximum_likelihood_one_per_column():
    rng = np.random.default_rng(1)
    columns = np.column_stack([rng.normal(size=500), rng.exponential(size=500), -rng.exponential(size=500)])
    fitted = fit_yeo_johnson(columns)
    expected = [stats.yeojohnson_normmax(column) for column in columns.T]
    np.testing.assert_allclose(fitted, np.clip(expected, *LAMBDA_RANGE), atol=0.011)
    assert fitted[1] < 0.6 < 1.4 < fitted[2]  # right skew is pulled in, left skew pushed out


def test_an_extreme_value_stays_extreme_whatever_the_fitted_exponent():
    # a kurtosis-50 column like the films' share of white pixels: unconstrained ML would pick a
    # negative exponent, which maps every large value below 1 / |lambda|
    rng = np.random.default_rng(2)
    heavy = np.concatenate([np.zeros(230), rng.exponential(scale=0.2, size=10) ** 3]).reshape(-1, 1)
    heavy = (heavy - heavy.mean()) / heavy.std()
    unconstrained = stats.yeojohnson_normmax(heavy[:, 0])
    exponent = fit_yeo_johnson(heavy)
    assert unconstrained < LAMBDA_RANGE[0] == exponent[0]
    extremes = np.array([[50.0], [5000.0]])
    bounded_far, bounded_farther = yeo_johnson(extremes, np.array([unconstrained]))[:, 0]
    assert bounded_farther - bounded_far < 1e-3  # the failure mode: 100 times further out, hardly moves
    far, farther = yeo_johnson(extremes, exponent)[:, 0]
    assert farther > far + 4.0 and far > yeo_johnson(heavy, exponent).max()
