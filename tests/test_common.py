"""scikit-learn's estimator checks for every clusterlens estimator."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from clusterlens.cluster import KMeans

# Each expected failure has a written reason.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-means++ seeding draws from the data rows, so weight 2 and a duplicated "
        "row give different random draws (scikit-learn's KMeans fails it too)."
    ),
}


@parametrize_with_checks(
    [KMeans(n_clusters=3, random_state=0)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
