//! Code shapes: which codes a lock takes, and generating one from the CSPRNG.

use rand::Rng;
use secrecy::SecretString;

/// Draws before giving up on finding a free code of the length asked for.
const MAX_DRAWS: usize = 2000;

/// Whether the lock refuses `code` as too simple (TTLock -2032): one digit repeated
/// (1111) or a run up or down by one (1234, 4321).
pub fn is_trivial(code: &str) -> bool {
    let digits: Vec<i16> = code
        .bytes()
        .map(|b| i16::from(b) - i16::from(b'0'))
        .collect();
    let mut steps = digits.windows(2).map(|w| w[1] - w[0]);
    match steps.next() {
        None => false,
        Some(first) => first.abs() <= 1 && steps.all(|s| s == first),
    }
}

/// Why a caller-chosen code cannot be used, if it cannot.
pub fn check_shape(code: &str) -> Option<&'static str> {
    if !(4..=9).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
        Some("must be 4 to 9 digits")
    } else if is_trivial(code) {
        Some("is too simple: no repeated digit (1111) or run (1234, 4321); the lock refuses those")
    } else {
        None
    }
}

/// A code of `length` digits from the thread's CSPRNG that is not trivial and for which
/// `taken` says no; `None` when none was found in [`MAX_DRAWS`] draws.
pub fn generate(length: usize, taken: impl Fn(&str) -> bool) -> Option<SecretString> {
    let mut rng = rand::rng();
    for _ in 0..MAX_DRAWS {
        let code: String = (0..length)
            .map(|_| char::from(b'0' + rng.random_range(0..10_u8)))
            .collect();
        if !is_trivial(&code) && !taken(&code) {
            return Some(SecretString::from(code));
        }
    }
    None
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn trivial_codes_are_the_ones_the_lock_refuses() {
        for code in [
            "1111",
            "000000",
            "1234",
            "0123",
            "6789",
            "4321",
            "9876543",
            "123456789",
        ] {
            assert!(is_trivial(code), "{code}");
            assert!(check_shape(code).is_some(), "{code}");
        }
        for code in ["1235", "0506", "482913", "135790", "1122", "9870", "2468"] {
            assert!(!is_trivial(code), "{code}");
            assert_eq!(check_shape(code), None, "{code}");
        }
        for code in ["", "123", "1234567890", "12a4", "١٢٣٤٥"] {
            assert_eq!(check_shape(code), Some("must be 4 to 9 digits"), "{code}");
        }
    }

    #[test]
    fn generated_codes_have_the_length_and_avoid_trivial_and_taken_codes() {
        for length in 4..=9 {
            let code = generate(length, |_| false).unwrap();
            let code = code.expose_secret();
            assert_eq!(code.len(), length);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
            assert!(!is_trivial(code));
        }
        // Only codes starting with 9 are free: one of them is found.
        let code = generate(4, |c| !c.starts_with('9')).unwrap();
        assert!(code.expose_secret().starts_with('9'));
        assert!(generate(4, |_| true).is_none());
    }
}
