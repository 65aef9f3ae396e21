//! Statistical functions for rule SQL, backed by statrs, so thresholds can be stated as
//! probabilities and robust scores instead of counts tuned to one simulation.
//!
//! - `poisson_sf(k, lambda)`: P(X ≥ k) for X ~ Poisson(λ). "How unlikely is it to see
//!   this many swipes if the terminal behaved like its peers?"
//! - `binomial_sf(k, n, p)`: P(X ≥ k) for X ~ Binomial(n, p). "How unlikely is it that
//!   k of n active days fall inside the benefit windows by chance?"
//! - `binomial_cdf(k, n, p)`: P(X ≤ k) for X ~ Binomial(n, p). "How unlikely is it that
//!   only k of n credited KPM have spent, if this district spent like its peers?"
//! - `others_rate(hits, own_hits, count, own_count)`: (hits − own_hits) / (count −
//!   own_count), the rate of everyone else in a group (0 when no one else), so an entity
//!   is never tested against a baseline it inflates itself.
//! - `p_score(p)`: −log10 p capped at 300, the score of an alert fired on a p-value.
//! - `robust_z(x, median, mad)`: (x − median) / (1.4826 · MAD), a z-score that one odd
//!   sale cannot move; 1.4826 makes it comparable to a normal z-score.
//!
//! Invalid parameters (λ ≤ 0, p outside [0, 1], MAD ≤ 0) give NULL, never an error, so
//! one odd row cannot fail a whole window.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use statrs::distribution::{Binomial, DiscreteCDF, Poisson};

pub fn poisson_sf(k: f64, lambda: f64) -> Option<f64> {
    if !(lambda > 0.0 && lambda.is_finite() && k.is_finite()) {
        return None;
    }
    if k <= 0.0 {
        return Some(1.0);
    }
    let dist = Poisson::new(lambda).ok()?;
    Some(dist.sf(k.ceil() as u64 - 1))
}

pub fn binomial_sf(k: f64, n: f64, p: f64) -> Option<f64> {
    if !((0.0..=1.0).contains(&p) && n >= 0.0 && n.is_finite() && k.is_finite()) {
        return None;
    }
    if k <= 0.0 {
        return Some(1.0);
    }
    if k > n {
        return Some(0.0);
    }
    let dist = Binomial::new(p, n.round() as u64).ok()?;
    Some(dist.sf(k.ceil() as u64 - 1))
}

pub fn binomial_cdf(k: f64, n: f64, p: f64) -> Option<f64> {
    if !((0.0..=1.0).contains(&p) && n >= 0.0 && n.is_finite() && k.is_finite()) {
        return None;
    }
    if k < 0.0 {
        return Some(0.0);
    }
    if k >= n {
        return Some(1.0);
    }
    let dist = Binomial::new(p, n.round() as u64).ok()?;
    Some(dist.cdf(k.floor() as u64))
}

pub fn others_rate(hits: f64, own_hits: f64, count: f64, own_count: f64) -> Option<f64> {
    Some((hits - own_hits) / (count - own_count).max(1.0))
}

/// −log10 p, between 0 and 300: the alert score of a p-value, larger when less likely.
pub(crate) fn p_score(p: f64) -> Option<f64> {
    (0.0..=1.0)
        .contains(&p)
        .then(|| (-p.max(1e-300).log10()).clamp(0.0, 300.0))
}

pub fn robust_z(x: f64, median: f64, mad: f64) -> Option<f64> {
    (mad > 0.0 && mad.is_finite()).then(|| (x - median) / (1.4826 * mad))
}

fn float_args(args: &[ColumnarValue]) -> Result<(Vec<ArrayRef>, usize)> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let len = arrays.first().map_or(0, |a| a.len());
    let arrays = arrays
        .iter()
        .map(|a| cast(a, &DataType::Float64))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((arrays, len))
}

/// A scalar UDF over `arity` numbers; any NULL argument gives NULL.
fn udf(name: &str, arity: usize, f: fn(&[f64]) -> Option<f64>) -> ScalarUDF {
    create_udf(
        name,
        vec![DataType::Float64; arity],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let (a, len) = float_args(args)?;
            let cols: Vec<&Float64Array> =
                a.iter().map(|c| c.as_primitive::<Float64Type>()).collect();
            let mut values = vec![0.0; cols.len()];
            let out: Float64Array = (0..len)
                .map(|i| {
                    for (v, c) in values.iter_mut().zip(&cols) {
                        if c.is_null(i) {
                            return None;
                        }
                        *v = c.value(i);
                    }
                    f(&values)
                })
                .collect();
            Ok(ColumnarValue::Array(Arc::new(out)))
        }),
    )
}

/// Every UDF pantau registers, for the rule runner and for `rules schema`.
pub fn all() -> Vec<ScalarUDF> {
    vec![
        udf("poisson_sf", 2, |a| poisson_sf(a[0], a[1])),
        udf("binomial_sf", 3, |a| binomial_sf(a[0], a[1], a[2])),
        udf("binomial_cdf", 3, |a| binomial_cdf(a[0], a[1], a[2])),
        udf("robust_z", 3, |a| robust_z(a[0], a[1], a[2])),
        udf("p_score", 1, |a| p_score(a[0])),
        udf("others_rate", 4, |a| others_rate(a[0], a[1], a[2], a[3])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        ((a - b) / b).abs() < rel
    }

    #[test]
    fn poisson_tail_matches_known_values() {
        // P(X ≥ 1 | λ=1) = 1 − e^−1
        assert!(close(
            poisson_sf(1.0, 1.0).unwrap(),
            1.0 - (-1.0f64).exp(),
            1e-9
        ));
        // P(X ≥ 10 | λ=2) = 4.6498e-5 (R: ppois(9, 2, lower.tail=FALSE))
        assert!(close(poisson_sf(10.0, 2.0).unwrap(), 4.649808e-5, 1e-4));
        assert_eq!(poisson_sf(0.0, 3.0), Some(1.0));
        assert_eq!(poisson_sf(5.0, 0.0), None);
    }

    #[test]
    fn binomial_tail_matches_known_values() {
        // P(X ≥ 14 | n=14, p=0.25) = 0.25^14
        assert!(close(
            binomial_sf(14.0, 14.0, 0.25).unwrap(),
            0.25f64.powi(14),
            1e-6
        ));
        // P(X ≥ 6 | n=10, p=0.5) = 386/1024
        assert!(close(
            binomial_sf(6.0, 10.0, 0.5).unwrap(),
            386.0 / 1024.0,
            1e-9
        ));
        assert_eq!(binomial_sf(11.0, 10.0, 0.5), Some(0.0));
        assert_eq!(binomial_sf(3.0, 10.0, 1.5), None);
    }

    #[test]
    fn binomial_lower_tail_matches_known_values() {
        // P(X ≤ 4 | n=10, p=0.5) = 386/1024, the mirror of P(X ≥ 6)
        assert!(close(
            binomial_cdf(4.0, 10.0, 0.5).unwrap(),
            386.0 / 1024.0,
            1e-9
        ));
        // P(X ≤ 0 | n=20, p=0.9) = 0.1^20
        assert!(close(
            binomial_cdf(0.0, 20.0, 0.9).unwrap(),
            0.1f64.powi(20),
            1e-6
        ));
        assert_eq!(binomial_cdf(10.0, 10.0, 0.3), Some(1.0));
        assert_eq!(binomial_cdf(-1.0, 10.0, 0.3), Some(0.0));
        assert_eq!(binomial_cdf(3.0, 10.0, -0.1), None);
    }

    #[test]
    fn p_score_is_minus_log10_capped() {
        assert!(close(p_score(1e-6).unwrap(), 6.0, 1e-12));
        assert_eq!(p_score(0.0), Some(300.0));
        assert_eq!(p_score(1.0), Some(0.0));
        assert_eq!(p_score(1.5), None);
    }

    #[test]
    fn others_rate_leaves_the_entity_out() {
        assert_eq!(others_rate(12.0, 10.0, 200.0, 100.0), Some(0.02));
        assert_eq!(others_rate(5.0, 5.0, 40.0, 40.0), Some(0.0));
    }

    #[test]
    fn robust_z_scales_mad_to_a_standard_deviation() {
        assert!(close(
            robust_z(13.0, 10.0, 1.0).unwrap(),
            3.0 / 1.4826,
            1e-12
        ));
        assert_eq!(robust_z(13.0, 10.0, 0.0), None);
    }
}
