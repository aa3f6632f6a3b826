//! Metric functions and their mergeable accumulators (`CellState`), plus the values they
//! output (`MetricValue`).
//!
//! Every accumulator merges commutatively and associatively, so partials committed in
//! any order converge:
//! * `count()` / `count_if(cond)`: u64 counts (`count()` counts every row, nulls included).
//! * `sum(x)`: ints sum exactly in i128; floats sum in exact **decimal fixed point with
//!   9 fractional digits** (i128 nano-units; each value is rounded once to 1e-9), so sums
//!   are order-independent and agree with a DECIMAL sum to the cent. Values whose
//!   magnitude exceeds 1e27 fall back to an f64 side sum. Null values are skipped; a sum of
//!   no values is null. `avg(x)` = the same exact sum / non-null count.
//! * `min(x)` / `max(x)`: total order (floats by `total_cmp`).
//! * `first(x)` / `last(x)`: the non-null value with the smallest / largest event time;
//!   ties are broken by the smaller / larger value so the result never depends on order.
//! * `distinct(x)` and `p50`/`p90`/`p95`/`p99`: see [`crate::sketch`].

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::expr::{self, Expr, ExprError, Scope, Type};
use crate::resources::Resources;
use crate::sketch::{Distinct, Quantiles};
use crate::types::{format_ts, round_i64, Val};

/// An aggregate function of a metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricFunc {
    Count,
    CountIf,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
    Distinct,
    /// Quantile in 0..1 (p50 = 0.5).
    Quantile(f64),
}

/// Names of the metric functions (for error messages).
pub const METRIC_FUNCTIONS: &str =
    "count, count_if, sum, min, max, avg, first, last, distinct, p50, p90, p95, p99";

impl MetricFunc {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "count" => MetricFunc::Count,
            "count_if" => MetricFunc::CountIf,
            "sum" => MetricFunc::Sum,
            "min" => MetricFunc::Min,
            "max" => MetricFunc::Max,
            "avg" | "mean" => MetricFunc::Avg,
            "first" => MetricFunc::First,
            "last" => MetricFunc::Last,
            "distinct" | "count_distinct" => MetricFunc::Distinct,
            "p50" | "median" => MetricFunc::Quantile(0.5),
            "p90" => MetricFunc::Quantile(0.9),
            "p95" => MetricFunc::Quantile(0.95),
            "p99" => MetricFunc::Quantile(0.99),
            _ => return None,
        })
    }
}

/// A compiled metric: `name = "func(arg)"`.
#[derive(Clone, Debug)]
pub struct MetricSpec {
    pub name: String,
    pub source: String,
    pub func: MetricFunc,
    /// The argument (the condition for `count_if`); `None` for `count()`.
    pub arg: Option<Expr>,
    /// The type of the metric's value.
    pub out_ty: Type,
}

impl MetricSpec {
    /// Compiles a metric definition against the row scope (no lookup tables or models).
    pub fn compile(name: &str, src: &str, scope: &dyn Scope) -> Result<MetricSpec, ExprError> {
        Self::compile_in(name, src, scope, &Resources::default())
    }

    /// Compiles a metric definition against the row scope and the pipeline's resources.
    pub fn compile_in(
        name: &str,
        src: &str,
        scope: &dyn Scope,
        res: &Resources,
    ) -> Result<MetricSpec, ExprError> {
        use cel::common::ast::Expr as E;
        let ast = expr::parse(src)?;
        let E::Call(call) = &ast.expr else {
            return Err(ExprError(format!(
                "\"{src}\" is not an aggregate call (use one of: {METRIC_FUNCTIONS})"
            )));
        };
        let fname = call.func_name.as_str();
        let Some(func) = MetricFunc::from_name(fname).filter(|_| call.target.is_none()) else {
            return Err(ExprError(format!(
                "unknown function \"{}\" (metric functions: {METRIC_FUNCTIONS})",
                fname.trim_matches('_')
            )));
        };
        let arity = usize::from(func != MetricFunc::Count);
        if call.args.len() != arity {
            return Err(ExprError(format!(
                "{fname}() takes {arity} argument{}, got {}",
                if arity == 1 { "" } else { "s" },
                call.args.len()
            )));
        }
        let arg = match call.args.first() {
            Some(a) => Some(Expr::compile_ast(a, scope, res)?),
            None => None,
        };
        let arg_ty = arg.as_ref().map_or(Type::Int, Expr::ty);
        let numeric = matches!(arg_ty, Type::Int | Type::Float);
        let out_ty = match func {
            MetricFunc::Count | MetricFunc::Distinct => Type::Int,
            MetricFunc::CountIf if arg_ty == Type::Bool => Type::Int,
            MetricFunc::CountIf => {
                return Err(ExprError(format!(
                    "count_if() needs a bool condition, got {}",
                    arg_ty.name()
                )))
            }
            MetricFunc::Sum if numeric => arg_ty,
            MetricFunc::Avg | MetricFunc::Quantile(_) if numeric => Type::Float,
            MetricFunc::Sum | MetricFunc::Avg | MetricFunc::Quantile(_) => {
                return Err(ExprError(format!(
                    "{fname}() needs a number, got {}",
                    arg_ty.name()
                )))
            }
            MetricFunc::Min | MetricFunc::Max | MetricFunc::First | MetricFunc::Last => {
                if arg_ty == Type::Null {
                    return Err(ExprError(format!("{fname}(null) is always null")));
                }
                arg_ty
            }
        };
        Ok(MetricSpec {
            name: name.to_string(),
            source: src.to_string(),
            func,
            arg,
            out_ty,
        })
    }

    /// A fresh accumulator for this metric.
    pub fn new_acc(&self) -> Acc {
        match self.func {
            MetricFunc::Count | MetricFunc::CountIf => Acc::Count(0),
            MetricFunc::Sum if self.out_ty == Type::Int => Acc::SumInt { sum: 0, n: 0 },
            MetricFunc::Sum => Acc::SumFloat(FloatSum::default()),
            MetricFunc::Avg => Acc::Avg(FloatSum::default()),
            MetricFunc::Min => Acc::Min(None),
            MetricFunc::Max => Acc::Max(None),
            MetricFunc::First => Acc::First(None),
            MetricFunc::Last => Acc::Last(None),
            MetricFunc::Distinct => Acc::Distinct(Box::default()),
            MetricFunc::Quantile(q) => Acc::Quantile {
                q,
                sketch: Box::default(),
            },
        }
    }
}

/// An owned typed value kept by min/max/first/last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// Epoch milliseconds.
    Ts(i64),
}

impl Scalar {
    fn from_val(v: &Val<'_>) -> Option<Scalar> {
        Some(match v {
            Val::Null => return None,
            Val::Bool(b) => Scalar::Bool(*b),
            Val::Int(i) => Scalar::Int(*i),
            Val::Float(f) => Scalar::Float(*f),
            Val::Str(s) => Scalar::Str(s.to_string()),
            Val::Ts(t) => Scalar::Ts(*t),
        })
    }

    pub(crate) fn as_val(&self) -> Val<'_> {
        match self {
            Scalar::Bool(b) => Val::Bool(*b),
            Scalar::Int(i) => Val::Int(*i),
            Scalar::Float(f) => Val::Float(*f),
            Scalar::Str(s) => Val::Str(s.as_str().into()),
            Scalar::Ts(t) => Val::Ts(*t),
        }
    }
}

/// A total order over values (floats by `total_cmp`, different kinds by kind).
pub fn total_cmp(a: &Val<'_>, b: &Val<'_>) -> Ordering {
    fn rank(v: &Val<'_>) -> u8 {
        match v {
            Val::Null => 0,
            Val::Bool(_) => 1,
            Val::Int(_) => 2,
            Val::Float(_) => 3,
            Val::Str(_) => 4,
            Val::Ts(_) => 5,
        }
    }
    match (a, b) {
        (Val::Float(x), Val::Float(y)) => x.total_cmp(y),
        _ => expr::compare(a, b).unwrap_or_else(|| rank(a).cmp(&rank(b))),
    }
}

/// A value with its event time (first/last).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timed {
    pub ms: i64,
    pub v: Scalar,
}

/// Exact, order-independent float sum: i128 nano-units plus an f64 side sum for huge values.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FloatSum {
    #[serde(with = "i128_str")]
    pub nanos: i128,
    pub big: f64,
    /// Number of non-null values added.
    pub n: u64,
}

const NANOS: f64 = 1e9;

impl FloatSum {
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.n += 1;
        self.add_uncounted(x);
    }

    /// `x` in nano units when that fits an i64: the common case, where `round` and the
    /// conversion are single instructions rather than library calls.
    #[inline]
    fn nanos_i64(x: f64) -> Option<i64> {
        let scaled = x * NANOS;
        (scaled.abs() < 9e18).then(|| round_i64(scaled))
    }

    /// `nanos` plus `x` in nano units when that stays in i64 (exactly what [`Self::add`]
    /// would make of it); `None` otherwise.
    #[inline]
    pub fn add_to_i64(nanos: i64, x: f64) -> Option<i64> {
        nanos.checked_add(Self::nanos_i64(x)?)
    }

    /// [`Self::add`] without counting the value (the caller counts).
    #[inline]
    pub fn add_uncounted(&mut self, x: f64) {
        if let Some(s) = Self::nanos_i64(x).and_then(|n| self.nanos.checked_add(i128::from(n))) {
            self.nanos = s;
            return;
        }
        let scaled = x * NANOS;
        if scaled.abs() < 1e36 {
            // `as` saturates and the bound above keeps it exact.
            if let Some(s) = self.nanos.checked_add(scaled.round() as i128) {
                self.nanos = s;
                return;
            }
        }
        self.big += x;
    }

    pub fn merge(&mut self, o: &FloatSum) {
        self.n += o.n;
        match self.nanos.checked_add(o.nanos) {
            Some(s) => self.nanos = s,
            None => self.big += o.nanos as f64 / NANOS,
        }
        self.big += o.big;
    }

    /// The sum as a metric's value: null when no value was added.
    #[inline]
    pub fn total(&self) -> Val<'static> {
        match self.n {
            0 => Val::Null,
            _ => Val::Float(self.value()),
        }
    }

    pub fn value(&self) -> f64 {
        // While the nano units are exact in an f64, one correctly rounded division: the
        // double nearest to the exact sum.
        if let Some(n) = self.exact_nanos() {
            return n as f64 / NANOS + self.big;
        }
        // The same integer arithmetic in i64 when it fits (i128 division is slow).
        let (whole, frac) = match i64::try_from(self.nanos) {
            Ok(n) => ((n / 1_000_000_000) as f64, (n % 1_000_000_000) as f64),
            Err(_) => (
                (self.nanos / 1_000_000_000) as f64,
                (self.nanos % 1_000_000_000) as f64,
            ),
        };
        whole + frac / NANOS + self.big
    }

    /// The nano units, when an f64 holds them exactly (below 2^53 in magnitude).
    fn exact_nanos(&self) -> Option<i64> {
        i64::try_from(self.nanos)
            .ok()
            .filter(|n| n.unsigned_abs() < 1 << 53)
    }

    /// The sum in hundredths when it is a whole number of them with nothing in the side
    /// sum: [`Self::value`] is then the double nearest to it, which prints as exactly that
    /// decimal (`output::write_cents`), with no float arithmetic.
    pub fn cents(&self) -> Option<i64> {
        const NANOS_PER_CENT: i64 = 10_000_000;
        let n = self.exact_nanos().filter(|_| self.big == 0.0)?;
        (n % NANOS_PER_CENT == 0).then_some(n / NANOS_PER_CENT)
    }
}

mod i128_str {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The mergeable partial state of one metric in one cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Acc {
    Count(u64),
    SumInt {
        #[serde(with = "i128_str")]
        sum: i128,
        n: u64,
    },
    SumFloat(FloatSum),
    Avg(FloatSum),
    Min(Option<Scalar>),
    Max(Option<Scalar>),
    First(Option<Timed>),
    Last(Option<Timed>),
    /// Boxed (like the quantile sketch) so the common accumulators stay small: an `Acc`
    /// is 48 bytes instead of a few hundred.
    Distinct(Box<Distinct>),
    Quantile {
        q: f64,
        sketch: Box<Quantiles>,
    },
}

impl Acc {
    /// Adds one (non-count) value observed at event time `ts`.
    #[inline]
    pub(crate) fn add(&mut self, v: &Val<'_>, ts: i64, scratch: &mut String) {
        if matches!(v, Val::Null) {
            return;
        }
        let low = matches!(self, Acc::Min(_) | Acc::First(_));
        match self {
            Acc::Count(n) => *n += 1,
            Acc::SumInt { sum, n } => {
                if let Val::Int(i) = v {
                    *sum += i128::from(*i);
                    *n += 1;
                }
            }
            Acc::SumFloat(s) | Acc::Avg(s) => {
                if let Some(x) = v.as_f64() {
                    s.add(x);
                }
            }
            Acc::Min(cur) | Acc::Max(cur) => {
                let want = if low {
                    Ordering::Less
                } else {
                    Ordering::Greater
                };
                let better = cur
                    .as_ref()
                    .is_none_or(|c| total_cmp(v, &c.as_val()) == want);
                if better {
                    *cur = Scalar::from_val(v);
                }
            }
            Acc::First(cur) | Acc::Last(cur) => {
                let better = match cur {
                    None => true,
                    Some(c) => timed_better(low, ts, v, c),
                };
                if better {
                    if let Some(s) = Scalar::from_val(v) {
                        *cur = Some(Timed { ms: ts, v: s });
                    }
                }
            }
            Acc::Distinct(d) => match v {
                Val::Str(s) => d.insert(s),
                other => {
                    scratch.clear();
                    let _ = match other {
                        Val::Int(i) | Val::Ts(i) => write!(scratch, "{i}"),
                        Val::Float(f) => write!(scratch, "{f}"),
                        Val::Bool(b) => write!(scratch, "{b}"),
                        _ => Ok(()),
                    };
                    d.insert(scratch);
                }
            },
            Acc::Quantile { sketch, .. } => {
                if let Some(x) = v.as_f64() {
                    sketch.add(x);
                }
            }
        }
    }

    /// Merges another partial of the same metric.
    pub fn merge(&mut self, other: &Acc) {
        match (self, other) {
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt { sum, n }, Acc::SumInt { sum: s2, n: n2 }) => {
                *sum = sum.saturating_add(*s2);
                *n += n2;
            }
            (Acc::SumFloat(a), Acc::SumFloat(b)) | (Acc::Avg(a), Acc::Avg(b)) => a.merge(b),
            (Acc::Min(a), Acc::Min(b)) => pick(a, b, Ordering::Less),
            (Acc::Max(a), Acc::Max(b)) => pick(a, b, Ordering::Greater),
            (Acc::First(a), Acc::First(b)) | (Acc::Last(a), Acc::Last(b)) => {
                let first = matches!(other, Acc::First(_));
                if let Some(bt) = b {
                    let better = match a {
                        None => true,
                        Some(at) => timed_better(first, bt.ms, &bt.v.as_val(), at),
                    };
                    if better {
                        *a = Some(bt.clone());
                    }
                }
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.merge(b),
            (Acc::Quantile { sketch: a, .. }, Acc::Quantile { sketch: b, .. }) => a.merge(b),
            // Different kinds never meet for the same metric of the same pipeline version.
            _ => {}
        }
    }

    /// The current value as a typed value (timestamps stay timestamps).
    pub fn val(&self) -> Val<'_> {
        match self {
            Acc::Count(n) => Val::Int(i64::try_from(*n).unwrap_or(i64::MAX)),
            Acc::SumInt { n: 0, .. } => Val::Null,
            Acc::SumInt { sum, .. } => match i64::try_from(*sum) {
                Ok(i) => Val::Int(i),
                Err(_) => Val::Float(*sum as f64),
            },
            Acc::SumFloat(s) => s.total(),
            Acc::Avg(s) if s.n == 0 => Val::Null,
            Acc::Avg(s) => Val::Float(avg(s)),
            Acc::Min(v) | Acc::Max(v) => v.as_ref().map_or(Val::Null, Scalar::as_val),
            Acc::First(t) | Acc::Last(t) => t.as_ref().map_or(Val::Null, |t| t.v.as_val()),
            Acc::Distinct(d) => Val::Int(i64::try_from(d.count()).unwrap_or(i64::MAX)),
            Acc::Quantile { q, sketch } => sketch.quantile(*q).map_or(Val::Null, Val::Float),
        }
    }
}

fn avg(s: &FloatSum) -> f64 {
    // Divide the exact nano sum first so the mean is correctly rounded when it fits.
    if s.big == 0.0 {
        let n = i128::from(s.n);
        let q = s.nanos / n;
        let r = s.nanos % n;
        (q / 1_000_000_000) as f64 + ((q % 1_000_000_000) as f64 + r as f64 / n as f64) / NANOS
    } else {
        s.value() / s.n as f64
    }
}

fn pick(a: &mut Option<Scalar>, b: &Option<Scalar>, want: Ordering) {
    if let Some(bv) = b {
        let better = a
            .as_ref()
            .is_none_or(|av| total_cmp(&bv.as_val(), &av.as_val()) == want);
        if better {
            *a = Some(bv.clone());
        }
    }
}

/// Whether (ts, v) beats the current first/last.
fn timed_better(first: bool, ts: i64, v: &Val<'_>, cur: &Timed) -> bool {
    let o = ts.cmp(&cur.ms).then_with(|| total_cmp(v, &cur.v.as_val()));
    if first {
        o == Ordering::Less
    } else {
        o == Ordering::Greater
    }
}

/// The partial aggregate of one (aggregate, group key, window) cell.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CellState {
    /// One accumulator per metric, in metric order.
    pub accs: Vec<Acc>,
    /// True when a late row (policy `update`) touched this cell.
    pub reopened: bool,
    /// Smallest event time seen in the cell (`i64::MAX` when empty).
    pub first_event_ms: i64,
    /// Largest event time seen in the cell (`i64::MIN` when empty).
    pub last_event_ms: i64,
    /// Rows aggregated into the cell.
    pub rows: u64,
}

impl CellState {
    /// An empty cell for the given metrics.
    pub fn new(metrics: &[MetricSpec]) -> CellState {
        CellState {
            accs: metrics.iter().map(MetricSpec::new_acc).collect(),
            reopened: false,
            first_event_ms: i64::MAX,
            last_event_ms: i64::MIN,
            rows: 0,
        }
    }

    /// Adds one row observed at event time `ts`.
    #[inline]
    pub fn update(
        &mut self,
        metrics: &[MetricSpec],
        row: &[Val<'_>],
        ts: i64,
        scratch: &mut String,
    ) {
        self.rows += 1;
        self.first_event_ms = self.first_event_ms.min(ts);
        self.last_event_ms = self.last_event_ms.max(ts);
        update_accs(&mut self.accs, metrics, row, ts, scratch);
    }

    /// Merges another partial of the same cell (commutative and associative).
    pub fn merge(&mut self, other: &CellState) {
        for (a, b) in self.accs.iter_mut().zip(&other.accs) {
            a.merge(b);
        }
        self.reopened |= other.reopened;
        self.first_event_ms = self.first_event_ms.min(other.first_event_ms);
        self.last_event_ms = self.last_event_ms.max(other.last_event_ms);
        self.rows += other.rows;
    }

    /// Metric values in metric order.
    pub fn values(&self) -> Vec<MetricValue> {
        self.accs
            .iter()
            .map(|a| MetricValue::from(a.val()))
            .collect()
    }

    /// Metric values as typed values (timestamps stay timestamps), for rule evaluation.
    pub fn typed_values(&self) -> Vec<Val<'_>> {
        self.accs.iter().map(Acc::val).collect()
    }

    pub fn reopened(&self) -> bool {
        self.reopened
    }
}

/// Adds one row observed at event time `ts` to one cell's accumulators (in metric order).
#[inline]
pub(crate) fn update_accs(
    accs: &mut [Acc],
    metrics: &[MetricSpec],
    row: &[Val<'_>],
    ts: i64,
    scratch: &mut String,
) {
    for (acc, m) in accs.iter_mut().zip(metrics) {
        match (m.func, &m.arg) {
            (MetricFunc::Count, _) => {
                if let Acc::Count(n) = acc {
                    *n += 1;
                }
            }
            (MetricFunc::CountIf, Some(cond)) => {
                if cond.matches(row) {
                    if let Acc::Count(n) = acc {
                        *n += 1;
                    }
                }
            }
            (_, Some(arg)) => {
                if let Some(slot) = arg.as_column() {
                    if let Some(v) = row.get(slot) {
                        acc.add(v, ts, scratch);
                    }
                } else {
                    acc.add(&arg.eval(row), ts, scratch);
                }
            }
            (_, None) => {}
        }
    }
}

/// An output value of a metric.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MetricValue {
    Null,
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl From<Val<'_>> for MetricValue {
    fn from(v: Val<'_>) -> Self {
        match v {
            Val::Null => MetricValue::Null,
            Val::Bool(b) => MetricValue::Bool(b),
            Val::Int(i) => MetricValue::Int(i),
            Val::Float(f) => MetricValue::Float(f),
            Val::Str(s) => MetricValue::Str(s.into_owned()),
            Val::Ts(t) => MetricValue::Str(format_ts(t)),
        }
    }
}

impl fmt::Display for MetricValue {
    /// Null is empty; floats print their shortest round-trip form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricValue::Null => Ok(()),
            MetricValue::Int(i) => write!(f, "{i}"),
            MetricValue::Float(x) => write!(f, "{x}"),
            MetricValue::Str(s) => f.write_str(s),
            MetricValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::ListScope;

    fn specs(defs: &[(&str, &str)]) -> Vec<MetricSpec> {
        crate::testing::metric_specs(defs)
    }

    #[test]
    fn a_sum_of_cents_prints_as_its_value_does() {
        let mut next = crate::testing::xorshift(7);
        let limit = 1i64 << 53;
        let mut printed = 0;
        for i in 0..300_000 {
            let r = next();
            // Whole cents of every size up to the exact bound, and some that are not.
            let nanos = match i % 4 {
                0 => (r % 2_000_000) as i64 * 10_000_000 - 10_000_000_000_000,
                1 => (r as i64 % (limit / 10_000_000)) * 10_000_000,
                2 => ((limit - 1) / 10_000_000 - (r % 1000) as i64) * 10_000_000,
                _ => r as i64 % limit,
            };
            let sum = FloatSum {
                nanos: i128::from(nanos),
                big: 0.0,
                n: 1,
            };
            let cents = sum.cents();
            assert_eq!(cents.is_some(), nanos % 10_000_000 == 0, "{nanos}");
            if let Some(c) = cents {
                let mut buf = Vec::new();
                crate::output::write_cents(&mut buf, c);
                assert_eq!(String::from_utf8(buf).unwrap(), sum.value().to_string());
                printed += 1;
            }
            // One correctly rounded division: the double nearest to nanos / 1e9.
            let exact = nanos as f64 / 1e9;
            assert_eq!(sum.value(), exact, "{nanos}");
        }
        assert!(printed > 200_000);
        // Past the bound, or with a side sum, no cents.
        let wide = |nanos: i128, big: f64| FloatSum { nanos, big, n: 1 }.cents();
        assert_eq!(wide(i128::from(limit) * 10, 0.0), None);
        assert_eq!(wide(10_000_000, 1e30), None);
        assert_eq!(wide(-10_000_000, 0.0), Some(-1));
    }

    fn all() -> Vec<MetricSpec> {
        specs(&[
            ("c", "count()"),
            ("ci", "count_if(amount > 10.0)"),
            ("sf", "sum(amount)"),
            ("si", "sum(n)"),
            ("mn", "min(amount)"),
            ("mx", "max(s)"),
            ("av", "avg(amount)"),
            ("fi", "first(s)"),
            ("la", "last(s)"),
            ("di", "distinct(s)"),
            ("p50", "p50(amount)"),
            ("mts", "max(ts)"),
            ("x2", "sum(amount * 2)"),
        ])
    }

    fn row(i: i64) -> Vec<Val<'static>> {
        let amount = if i % 7 == 0 {
            Val::Null
        } else {
            Val::Float(i as f64 * 0.01 + 0.1)
        };
        vec![
            amount,
            Val::Int(i),
            Val::Str(format!("k{}", i % 13).into()),
            Val::Ts(i * 1000 % 17_000),
        ]
    }

    fn fold(m: &[MetricSpec], rows: impl Iterator<Item = i64>) -> CellState {
        let mut c = CellState::new(m);
        let mut scratch = String::new();
        for i in rows {
            let r = row(i);
            c.update(m, &r, i * 1000 % 17_000, &mut scratch);
        }
        c
    }

    #[test]
    fn values_are_right() {
        let m = all();
        let c = fold(&m, 1..=14);
        let v = c.values();
        assert_eq!(v[0], MetricValue::Int(14));
        // amounts: i*0.01+0.1 except i=7,14 -> 12 values, none > 10
        assert_eq!(v[1], MetricValue::Int(0));
        let expect: f64 = (1..=14)
            .filter(|i| i % 7 != 0)
            .map(|i| i as f64 * 0.01 + 0.1)
            .sum();
        match v[2] {
            MetricValue::Float(f) => assert!((f - expect).abs() < 1e-12),
            ref o => panic!("{o:?}"),
        }
        assert_eq!(v[3], MetricValue::Int(105));
        assert_eq!(v[4], MetricValue::Float(0.11));
        assert_eq!(v[5], MetricValue::Str("k9".into()));
        assert_eq!(v[9], MetricValue::Int(13));
        assert_eq!(v[11], MetricValue::Str("1970-01-01T00:00:14Z".into()));
        assert_eq!(c.rows, 14);
        // Sums of cents are exact.
        let cents = specs(&[("s", "sum(amount)")]);
        let mut c = CellState::new(&cents);
        let mut scratch = String::new();
        for _ in 0..10 {
            c.update(&cents, &[Val::Float(0.1)], 0, &mut scratch);
        }
        assert_eq!(c.values(), vec![MetricValue::Float(1.0)]);
        // Empty sum / avg / min are null, count is 0.
        let e = CellState::new(&m).values();
        assert_eq!(e[0], MetricValue::Int(0));
        assert_eq!(e[2], MetricValue::Null);
        assert_eq!(e[6], MetricValue::Null);
        assert_eq!(e[10], MetricValue::Null);
    }

    #[test]
    fn accumulators_stay_small() {
        // The big sketches are boxed: every cell pays for its accumulators.
        assert!(
            std::mem::size_of::<Acc>() <= 48,
            "{}",
            std::mem::size_of::<Acc>()
        );
    }

    #[test]
    fn first_last_ties_are_deterministic() {
        let m = specs(&[("f", "first(s)"), ("l", "last(s)")]);
        let mut scratch = String::new();
        let rows = [("b", 5), ("a", 5), ("c", 9), ("d", 9), ("z", 1)];
        let mut fwd = CellState::new(&m);
        for (s, t) in rows {
            fwd.update(
                &m,
                &[Val::Null, Val::Null, Val::Str(s.into())],
                t,
                &mut scratch,
            );
        }
        let mut rev = CellState::new(&m);
        for (s, t) in rows.iter().rev() {
            rev.update(
                &m,
                &[Val::Null, Val::Null, Val::Str((*s).into())],
                *t,
                &mut scratch,
            );
        }
        assert_eq!(fwd, rev);
        assert_eq!(
            fwd.values(),
            vec![MetricValue::Str("z".into()), MetricValue::Str("d".into())]
        );
    }

    #[test]
    fn merge_equals_whole_for_any_split() {
        let m = all();
        let whole = fold(&m, 0..200);
        for split in [0, 1, 50, 199, 200] {
            let a = fold(&m, 0..split);
            let b = fold(&m, split..200);
            let mut ab = a.clone();
            ab.merge(&b);
            let mut ba = b.clone();
            ba.merge(&a);
            assert_eq!(ab.values(), whole.values(), "split {split}");
            assert_eq!(ab, ba, "split {split}");
        }
        // Three-way associativity.
        let (a, b, c) = (fold(&m, 0..60), fold(&m, 60..130), fold(&m, 130..200));
        let mut l = a.clone();
        l.merge(&b);
        l.merge(&c);
        let mut r = b.clone();
        r.merge(&c);
        let mut r2 = a.clone();
        r2.merge(&r);
        assert_eq!(l, r2);
        // Serde round trip.
        let json = serde_json::to_string(&whole).unwrap();
        let back: CellState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, whole);
    }

    #[test]
    fn metric_errors() {
        let names: Vec<(String, Type)> =
            vec![("amount".into(), Type::Float), ("s".into(), Type::Str)];
        let scope = ListScope {
            names: &names,
            kind: "column",
        };
        for (src, want) in [
            ("sum(amout)", "unknown column \"amout\""),
            ("total(amount)", "unknown function \"total\""),
            ("sum(s)", "needs a number"),
            ("count(amount)", "takes 0 arguments"),
            ("count_if(amount)", "bool condition"),
            ("amount", "not an aggregate call"),
            ("amount > 3", "unknown function \">\""),
        ] {
            let e = MetricSpec::compile("m", src, &scope)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{src}: {e}");
        }
    }

    #[test]
    fn metric_value_display_and_serde() {
        assert_eq!(
            MetricValue::Float(0.1 + 0.2).to_string(),
            "0.30000000000000004"
        );
        assert_eq!(MetricValue::Float(3.0).to_string(), "3");
        assert_eq!(MetricValue::Null.to_string(), "");
        let v = vec![
            MetricValue::Null,
            MetricValue::Int(3),
            MetricValue::Float(2.5),
            MetricValue::Str("x".into()),
            MetricValue::Bool(true),
        ];
        let j = serde_json::to_string(&v).unwrap();
        assert_eq!(j, r#"[null,3,2.5,"x",true]"#);
        let back: Vec<MetricValue> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, v);
    }
}
