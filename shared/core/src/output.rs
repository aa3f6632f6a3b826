//! Writing window cells as CSV or JSON (shared by `csvflow run` and `csvflow windows`, so
//! their outputs can be diffed).

use std::io::{self, Write};

use crate::definition::Aggregate;
use crate::engine::CellKey;
use crate::metrics::{CellState, MetricValue};
use crate::types::format_ts;

/// Output format of `write_windows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Csv,
    Json,
}

/// Writes the cells of one aggregate, sorted by group key then window start.
///
/// CSV header: group-by columns, `window_start`, `window_end` (RFC 3339 UTC), then the
/// metrics in order; null is the empty field; floats in shortest round-trip form.
/// JSON: an array with one object per cell and the same fields (numbers as numbers, null
/// as null), one object per line.
pub fn write_windows<'a, W: Write>(
    agg: &Aggregate,
    cells: impl IntoIterator<Item = (&'a CellKey, &'a CellState)>,
    format: OutputFormat,
    mut out: W,
) -> io::Result<()> {
    let mut rows: Vec<(&CellKey, &CellState)> = cells
        .into_iter()
        .filter(|(k, _)| k.aggregate == agg.name())
        .collect();
    rows.sort_by(|a, b| {
        (&a.0.group, a.0.start_ms, a.0.end_ms).cmp(&(&b.0.group, b.0.start_ms, b.0.end_ms))
    });
    let metrics = agg.metric_names();
    match format {
        OutputFormat::Csv => {
            let mut w = csv::WriterBuilder::new()
                .terminator(csv::Terminator::Any(b'\n'))
                .from_writer(&mut out);
            let mut header: Vec<&str> = agg.group_by().iter().map(String::as_str).collect();
            header.extend(["window_start", "window_end"]);
            header.extend(metrics.iter().copied());
            w.write_record(&header)?;
            let mut rec: Vec<String> = Vec::with_capacity(header.len());
            for (k, c) in rows {
                rec.clear();
                rec.extend(k.group.iter().cloned());
                rec.push(format_ts(k.start_ms));
                rec.push(format_ts(k.end_ms));
                rec.extend(c.values().iter().map(MetricValue::to_string));
                w.write_record(&rec)?;
            }
            w.flush()?;
        }
        OutputFormat::Json => {
            out.write_all(b"[")?;
            for (i, (k, c)) in rows.into_iter().enumerate() {
                out.write_all(if i == 0 { b"\n{" } else { b",\n{" })?;
                let mut first = true;
                let mut field =
                    |out: &mut W, name: &str, v: &serde_json::Value| -> io::Result<()> {
                        if !first {
                            out.write_all(b",")?;
                        }
                        first = false;
                        serde_json::to_writer(&mut *out, name)?;
                        out.write_all(b":")?;
                        serde_json::to_writer(&mut *out, v)?;
                        Ok(())
                    };
                for (name, g) in agg.group_by().iter().zip(&k.group) {
                    field(&mut out, name, &serde_json::Value::from(g.as_str()))?;
                }
                field(&mut out, "window_start", &format_ts(k.start_ms).into())?;
                field(&mut out, "window_end", &format_ts(k.end_ms).into())?;
                for (name, v) in metrics.iter().zip(c.values()) {
                    let j = match v {
                        MetricValue::Null => serde_json::Value::Null,
                        MetricValue::Int(i) => i.into(),
                        MetricValue::Float(f) => serde_json::Number::from_f64(f)
                            .map_or(serde_json::Value::Null, serde_json::Value::Number),
                        MetricValue::Str(s) => s.into(),
                        MetricValue::Bool(b) => b.into(),
                    };
                    field(&mut out, name, &j)?;
                }
                out.write_all(b"}")?;
            }
            out.write_all(b"\n]\n")?;
        }
    }
    out.flush()
}
