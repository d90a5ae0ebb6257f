//! What is wrong with a configuration, collected rather than stopped at the first, so one
//! run of `avscene check-config` shows all there is to fix; and the checks every stage's
//! settings share (a number that is finite and in range, a file that exists). A leaf:
//! it imports no stage, and every stage's config validates itself with it.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;

/// One thing wrong with a configuration: the key it concerns and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub reason: String,
}

/// Every problem found, in the order found.
#[derive(Debug, Default)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Problem> {
        self.0
    }

    /// A real number (seconds, a ratio) that must be finite and within `range`; true
    /// when it is. Anything it lets through is safe for `Duration::from_secs_f64`.
    pub fn number(
        &mut self,
        key: &str,
        value: f64,
        range: RangeInclusive<f64>,
        unit: &str,
    ) -> bool {
        let ok = value.is_finite() && range.contains(&value);
        if !ok {
            self.push(
                key,
                format!(
                    "must be a number from {} to {}{unit}, not {value}",
                    range.start(),
                    range.end()
                ),
            );
        }
        ok
    }

    /// A whole number within `range`; true when it is.
    pub fn count<T: PartialOrd + Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> bool {
        let ok = range.contains(&value);
        if !ok {
            self.push(
                key,
                format!("must be {}..={}, not {value}", range.start(), range.end()),
            );
        }
        ok
    }

    /// A file that must exist and be readable.
    pub fn file(&mut self, key: &str, path: &Path) -> bool {
        let ok = std::fs::File::open(path).is_ok_and(|f| f.metadata().is_ok_and(|m| m.is_file()));
        if !ok {
            self.push(key, format!("{} is not a readable file", path.display()));
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_be_finite_and_in_range() {
        let mut p = Problems::default();
        assert!(p.number("a", 1.5, 0.0..=10.0, " s"));
        for bad in [f64::NAN, f64::INFINITY, 1e300, -1.0] {
            assert!(!p.number("b", bad, 0.0..=10.0, " s"));
        }
        assert!(!p.count("c", 0u64, 1..=10));
        let all = p.into_vec();
        assert_eq!(all.len(), 5);
        assert_eq!(all[0].reason, "must be a number from 0 to 10 s, not NaN");
        assert_eq!(all[4].reason, "must be 1..=10, not 0");
    }
}
