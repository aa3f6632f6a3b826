//! Mergeable sketches: exact-then-HyperLogLog distinct counting and DDSketch quantiles.
//!
//! * `distinct(x)` keeps the exact set of values up to [`DISTINCT_EXACT_LIMIT`] values;
//!   beyond that it switches to a HyperLogLog with 2^12 registers (standard error
//!   1.04/sqrt(4096) ≈ 1.6%), hashing with xxh3-64 (stable across processes and
//!   versions). Merging is a set union / register-wise max: commutative, associative and
//!   idempotent. A hand-written HLL is used because the HLL crates either hash with
//!   process-random keys or do not serialize their state, and both are required here.
//! * `p50(x)`…`p99(x)` use `sketches-ddsketch` (DDSketch, relative accuracy α = 1%:
//!   a returned quantile q̂ satisfies |q̂ − q| ≤ 0.01·|q| for the rank the sketch picks; up
//!   to 2048 bins per sign, beyond which the lowest bins collapse). Merging adds bin
//!   counts, so it is order-independent.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};

/// Exact distinct values kept before switching to a HyperLogLog.
pub const DISTINCT_EXACT_LIMIT: usize = 10_000;

const HLL_P: u32 = 12;
const HLL_M: usize = 1 << HLL_P;

/// A HyperLogLog sketch (registers serialized as hex).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hll {
    #[serde(with = "hex_bytes")]
    registers: Vec<u8>,
}

impl fmt::Debug for Hll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hll(~{})", self.estimate())
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            registers: vec![0; HLL_M],
        }
    }
}

impl Hll {
    pub fn insert(&mut self, value: &[u8]) {
        let h = xxhash_rust::xxh3::xxh3_64(value);
        let idx = (h >> (64 - HLL_P)) as usize;
        let rest = h << HLL_P;
        let rank = (rest.leading_zeros().min(64 - HLL_P) + 1) as u8;
        if let Some(r) = self.registers.get_mut(idx) {
            if *r < rank {
                *r = rank;
            }
        }
    }

    pub fn merge(&mut self, other: &Hll) {
        if self.registers.len() != HLL_M {
            self.registers.resize(HLL_M, 0);
        }
        for (a, b) in self.registers.iter_mut().zip(&other.registers) {
            *a = (*a).max(*b);
        }
    }

    pub fn estimate(&self) -> u64 {
        let m = HLL_M as f64;
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for r in &self.registers {
            sum += 2f64.powi(-i32::from(*r));
            if *r == 0 {
                zeros += 1;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let e = alpha * m * m / sum;
        let e = if e <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            e
        };
        e.round() as u64
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(b.len() * 2);
        for x in b {
            out.push(char::from(b"0123456789abcdef"[usize::from(x >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(x & 15)]));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        let hex = |c: u8| -> Result<u8, D::Error> {
            (c as char)
                .to_digit(16)
                .map(|v| v as u8)
                .ok_or_else(|| serde::de::Error::custom("bad hex in sketch"))
        };
        s.as_bytes()
            .chunks(2)
            .map(|p| match p {
                [a, b] => Ok(hex(*a)? << 4 | hex(*b)?),
                _ => Err(serde::de::Error::custom("odd hex length in sketch")),
            })
            .collect()
    }
}

/// Distinct values: exact set up to [`DISTINCT_EXACT_LIMIT`], then a HyperLogLog.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distinct {
    Exact(BTreeSet<String>),
    Sketch(Hll),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(BTreeSet::new())
    }
}

impl Distinct {
    /// Adds a value (its canonical text); allocates only for a value not seen yet.
    pub fn insert(&mut self, v: &str) {
        match self {
            Distinct::Exact(set) => {
                if !set.contains(v) {
                    set.insert(v.to_string());
                    if set.len() > DISTINCT_EXACT_LIMIT {
                        self.switch_to_sketch();
                    }
                }
            }
            Distinct::Sketch(h) => h.insert(v.as_bytes()),
        }
    }

    fn switch_to_sketch(&mut self) {
        if let Distinct::Exact(set) = self {
            let mut h = Hll::default();
            for v in set.iter() {
                h.insert(v.as_bytes());
            }
            *self = Distinct::Sketch(h);
        }
    }

    pub fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(o) => {
                for v in o {
                    self.insert(v);
                }
            }
            Distinct::Sketch(o) => {
                self.switch_to_sketch();
                if let Distinct::Sketch(h) = self {
                    h.merge(o);
                }
            }
        }
    }

    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(s) => s.len() as u64,
            Distinct::Sketch(h) => h.estimate(),
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Distinct::Exact(_))
    }
}

/// A DDSketch over one metric's values.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantiles(DDSketch);

impl Default for Quantiles {
    fn default() -> Self {
        Quantiles(DDSketch::new(Config::defaults()))
    }
}

impl fmt::Debug for Quantiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quantiles(n={})", self.0.count())
    }
}

impl PartialEq for Quantiles {
    fn eq(&self, other: &Self) -> bool {
        self.0.count() == other.0.count()
            && [0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
                .iter()
                .all(|q| self.quantile(*q) == other.quantile(*q))
    }
}

impl Quantiles {
    pub fn add(&mut self, v: f64) {
        if v.is_finite() {
            self.0.add(v);
        }
    }

    pub fn merge(&mut self, other: &Quantiles) {
        // Only fails on a config mismatch; every sketch here uses the same config.
        let _ = self.0.merge(&other.0);
    }

    /// The q-quantile (0..=1), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.0.quantile(q).ok().flatten()
    }

    pub fn count(&self) -> u64 {
        self.0.count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_exact_then_sketch() {
        let mut a = Distinct::default();
        for i in 0..100 {
            a.insert(&(i % 10).to_string());
        }
        assert_eq!(a.count(), 10);
        assert!(a.is_exact());
        let mut big = Distinct::default();
        for i in 0..50_000 {
            big.insert(&i.to_string());
        }
        assert!(!big.is_exact());
        let est = big.count() as f64;
        assert!((est - 50_000.0).abs() / 50_000.0 < 0.05, "{est}");
        // Merge is commutative and equals inserting everything.
        let (mut x, mut y) = (Distinct::default(), Distinct::default());
        for i in 0..30_000 {
            x.insert(&i.to_string());
        }
        for i in 20_000..50_000 {
            y.insert(&i.to_string());
        }
        let mut xy = x.clone();
        xy.merge(&y);
        let mut yx = y.clone();
        yx.merge(&x);
        assert_eq!(xy, yx);
        assert_eq!(xy, big);
        let json = serde_json::to_string(&xy).unwrap();
        let back: Distinct = serde_json::from_str(&json).unwrap();
        assert_eq!(back, xy);
    }

    #[test]
    fn distinct_merge_crossing_the_limit() {
        let (mut x, mut y) = (Distinct::default(), Distinct::default());
        for i in 0..6_000 {
            x.insert(&format!("a{i}"));
            y.insert(&format!("b{i}"));
        }
        let mut xy = x.clone();
        xy.merge(&y);
        let mut yx = y;
        yx.merge(&x);
        assert_eq!(xy, yx);
        assert!(!xy.is_exact());
    }

    #[test]
    fn quantiles_within_one_percent() {
        let mut q = Quantiles::default();
        for i in 1..=10_000 {
            q.add(f64::from(i));
        }
        let p50 = q.quantile(0.5).unwrap();
        assert!((p50 - 5000.0).abs() <= 0.01 * 5000.0 + 1.0, "{p50}");
        let p99 = q.quantile(0.99).unwrap();
        assert!((p99 - 9900.0).abs() <= 0.01 * 9900.0 + 1.0, "{p99}");
        let json = serde_json::to_string(&q).unwrap();
        let back: Quantiles = serde_json::from_str(&json).unwrap();
        assert_eq!(back, q);
        let (mut a, mut b) = (Quantiles::default(), Quantiles::default());
        for i in 1..=10_000 {
            if i % 3 == 0 { &mut a } else { &mut b }.add(f64::from(i) - 5000.0);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b;
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert!(Quantiles::default().quantile(0.5).is_none());
    }
}
