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

/// Compiles metric definitions against test columns: `amount` (float), `n` (int), `s`
/// (string) and `ts` (timestamp), in that order.
pub(crate) fn metric_specs(defs: &[(&str, &str)]) -> Vec<crate::metrics::MetricSpec> {
    use crate::expr::{ListScope, Type};
    let names: Vec<(String, Type)> = vec![
        ("amount".into(), Type::Float),
        ("n".into(), Type::Int),
        ("s".into(), Type::Str),
        ("ts".into(), Type::Ts),
    ];
    let scope = ListScope {
        names: &names,
        kind: "column",
    };
    defs.iter()
        .map(|(n, d)| crate::metrics::MetricSpec::compile(n, d, &scope).unwrap())
        .collect()
}
