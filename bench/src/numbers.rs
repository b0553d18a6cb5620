//! Number formatting shared by the reports.

/// `digits` (an unsigned integer's decimal digits) with a comma every three from the
/// right: `1234567` → `1,234,567`.
pub fn thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn commas_every_three_digits_from_the_right() {
        assert_eq!(super::thousands("0"), "0");
        assert_eq!(super::thousands("999"), "999");
        assert_eq!(super::thousands("1000"), "1,000");
        assert_eq!(super::thousands("1234567"), "1,234,567");
    }
}
