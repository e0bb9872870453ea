//! Rounding of published figures, so prices and sizes look like an exchange's
//! (`64012.337`, not `64012.33712938417`) and every consumer can recompute
//! totals from exactly the numbers that were published.

/// `x` rounded to `digits` significant decimal digits.
///
/// Positive finite input gives positive finite output (the result is never
/// rounded down to zero), which the price invariant relies on.
pub fn round_sig(x: f64, digits: i32) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let exponent = digits - 1 - magnitude;
    let rounded = if exponent >= 0 {
        // Multiplying and dividing by an exact power of ten lands on the
        // double nearest the decimal, so it prints short.
        let scale = 10f64.powi(exponent);
        (x * scale).round() / scale
    } else {
        let scale = 10f64.powi(-exponent);
        (x / scale).round() * scale
    };
    if rounded == 0.0 || !rounded.is_finite() {
        x
    } else {
        rounded
    }
}

/// `x` rounded to `decimals` places after the point (money, percentages).
pub fn round_dp(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let rounded = (x * scale).round() / scale;
    if rounded.is_finite() { rounded } else { x }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_significant_digits() {
        assert_eq!(round_sig(64012.33712938417, 8), 64012.337);
        assert_eq!(round_sig(0.000012345678912, 8), 0.000012345679);
        assert_eq!(round_sig(123456789012.0, 8), 123456790000.0);
        assert_eq!(round_sig(1e-12, 8), 1e-12);
        assert_eq!(round_dp(2.345678, 2), 2.35);
    }
}
