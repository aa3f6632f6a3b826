//! Static data a pipeline's expressions can use: lookup tables (`lookup(...)`), trained
//! scoring models (`score(...)`) and the sentiment lexicon (`sentiment(...)`).
//!
//! Tables and models are files named in the definition and loaded once, before any row is
//! read, through a [`FileLoader`] (local files for `csvflow run`, S3 objects in Lambda).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock};

use serde::Deserialize;

/// Reads a file a definition refers to (path as written, resolved by the loader).
pub trait FileLoader {
    fn load(&self, path: &str) -> Result<Vec<u8>, String>;
}

/// A loader for definitions that refer to no files.
pub struct NoFiles;

impl FileLoader for NoFiles {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        Err(format!("cannot load \"{path}\": no file loader configured"))
    }
}

/// Reads files relative to a directory (the definitions file's), absolute paths as they are.
pub struct DirLoader(pub std::path::PathBuf);

impl FileLoader for DirLoader {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        let full = self.0.join(path);
        std::fs::read(&full).map_err(|e| format!("cannot read {}: {e}", full.display()))
    }
}

/// Files already fetched, by path (for drivers that prefetch asynchronously).
impl FileLoader for HashMap<String, Vec<u8>> {
    fn load(&self, path: &str) -> Result<Vec<u8>, String> {
        self.get(path)
            .cloned()
            .ok_or_else(|| format!("\"{path}\" was not fetched"))
    }
}

/// A static lookup table: rows of string fields keyed by one column.
pub struct LookupTable {
    pub name: String,
    columns: Vec<String>,
    rows: HashMap<String, Vec<String>>,
}

impl LookupTable {
    /// Parses a CSV file with a header; `key` names the key column. Duplicate keys are
    /// an error (which row wins would otherwise be arbitrary).
    pub fn from_csv(name: &str, bytes: &[u8], key: &str) -> Result<LookupTable, String> {
        let mut rdr = csv::ReaderBuilder::new().from_reader(bytes);
        let columns: Vec<String> = rdr
            .headers()
            .map_err(|e| format!("bad CSV header: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let key_index = columns
            .iter()
            .position(|c| c == key)
            .ok_or_else(|| format!("key column \"{key}\" is not in the header {columns:?}"))?;
        let mut rows = HashMap::new();
        for (i, record) in rdr.records().enumerate() {
            let record = record.map_err(|e| format!("line {}: {e}", i + 2))?;
            let fields: Vec<String> = record.iter().map(str::to_string).collect();
            let k = fields.get(key_index).cloned().unwrap_or_default();
            if rows.insert(k.clone(), fields).is_some() {
                return Err(format!("line {}: duplicate key \"{k}\"", i + 2));
            }
        }
        Ok(LookupTable {
            name: name.to_string(),
            columns,
            rows,
        })
    }

    /// The index of a column, for compiling `lookup(table, key, "column")`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The field of the row with this key; `None` for an unknown key or an empty field.
    pub fn get(&self, key: &str, column: usize) -> Option<&str> {
        self.rows
            .get(key)
            .and_then(|r| r.get(column))
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

impl fmt::Debug for LookupTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LookupTable({}, {} rows)", self.name, self.rows.len())
    }
}

/// A trained scoring model. Today: logistic regression, the workhorse of fraud scoring,
/// whose weights any training stack (scikit-learn, Spark MLlib, ...) can export.
///
/// File format (JSON):
/// `{"kind": "logistic_regression", "features": ["amount_k", "foreign"],
///   "intercept": -4.0, "coefficients": [0.8, 2.1]}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    #[serde(skip)]
    pub name: String,
    pub kind: ModelKind,
    /// Feature names, in the order `score(model, ...)` takes them.
    pub features: Vec<String>,
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    LogisticRegression,
}

impl Model {
    pub fn from_json(name: &str, bytes: &[u8]) -> Result<Model, String> {
        let mut m: Model = serde_json::from_slice(bytes).map_err(|e| format!("bad model: {e}"))?;
        if m.features.len() != m.coefficients.len() {
            return Err(format!(
                "{} features but {} coefficients",
                m.features.len(),
                m.coefficients.len()
            ));
        }
        if !m.intercept.is_finite() || m.coefficients.iter().any(|c| !c.is_finite()) {
            return Err("weights must be finite numbers".into());
        }
        m.name = name.to_string();
        Ok(m)
    }

    /// The probability for one feature vector (same length as `features`).
    pub fn score(&self, x: &[f64]) -> f64 {
        let z = self.intercept
            + self
                .coefficients
                .iter()
                .zip(x)
                .map(|(w, v)| w * v)
                .sum::<f64>();
        match self.kind {
            ModelKind::LogisticRegression => 1.0 / (1.0 + (-z).exp()),
        }
    }
}

static SENTIMENT: LazyLock<vader_parity::SentimentIntensityAnalyzer> =
    LazyLock::new(vader_parity::SentimentIntensityAnalyzer::new);

/// The VADER compound sentiment of a text, in -1 (most negative) ..= 1 (most positive).
/// VADER is a lexicon and rule-based scorer for short social-media style texts; the
/// `vader-parity` crate reproduces Python vaderSentiment 3.3.2 exactly (compound rounded
/// to 4 decimals, as there) with its lexicon compiled in: no network, no download.
pub fn sentiment(text: &str) -> f64 {
    SENTIMENT.polarity_scores(text).compound
}

/// The lookup tables and models of one pipeline, by name.
#[derive(Clone, Debug, Default)]
pub struct Resources {
    pub lookups: HashMap<String, Arc<LookupTable>>,
    pub models: HashMap<String, Arc<Model>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_table_reads_csv_and_rejects_duplicates() {
        let t =
            LookupTable::from_csv("zones", b"zone_id,name\nZ1,Downtown\nZ2,\n", "zone_id").unwrap();
        let name = t.column("name").unwrap();
        assert_eq!(t.get("Z1", name), Some("Downtown"));
        assert_eq!(t.get("Z2", name), None, "empty field reads as null");
        assert_eq!(t.get("Z9", name), None);
        let e = LookupTable::from_csv("z", b"zone_id,name\nZ1,a\nZ1,b\n", "zone_id").unwrap_err();
        assert!(e.contains("duplicate key \"Z1\""), "{e}");
        let e = LookupTable::from_csv("z", b"id,name\n", "zone_id").unwrap_err();
        assert!(e.contains("key column"), "{e}");
    }

    #[test]
    fn logistic_model_scores() {
        let m = Model::from_json(
            "fraud",
            br#"{"kind":"logistic_regression","features":["a","b"],"intercept":-1.0,"coefficients":[2.0,0.5]}"#,
        )
        .unwrap();
        let want = 1.0 / (1.0 + (-(-1.0 + 2.0 * 1.0 + 0.5 * 4.0f64)).exp());
        assert!((m.score(&[1.0, 4.0]) - want).abs() < 1e-12);
        assert!((m.score(&[0.5, 0.0]) - 0.5).abs() < 1e-12);
        let e = Model::from_json(
            "m",
            br#"{"kind":"logistic_regression","features":["a"],"intercept":0,"coefficients":[]}"#,
        )
        .unwrap_err();
        assert!(e.contains("1 features but 0 coefficients"), "{e}");
        assert!(Model::from_json(
            "m",
            br#"{"kind":"svm","features":[],"intercept":0,"coefficients":[]}"#
        )
        .is_err());
    }

    #[test]
    fn sentiment_orders_texts() {
        assert!(sentiment("I love it, great app!") > 0.5);
        assert!(sentiment("Terrible, broken, I want a refund") < -0.5);
        assert_eq!(sentiment(""), 0.0);
    }
}
