//! Helpers shared by the unit tests.

/// A deterministic xorshift64 generator (a seed of 0 is taken as 1).
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.max(1);
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}
