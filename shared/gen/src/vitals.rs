//! `vitals`: patient monitor readings and medication doses over 12 hours, timestamps in
//! naive America/New_York local time. Everyone should take one dose per UTC-aligned
//! 6-hour window; a few patients miss one. Plants abnormal readings too (heart rate
//! > 120, SpO2 < 90, systolic > 180).

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    assemble, bell, below, between, chance, int_between, schedule, shares, window_start, Layout,
    Rng, Row, Span, TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Vitals,
    prefix: "vitals",
    header: &[
        "ts",
        "patient_id",
        "kind",
        "heart_rate",
        "spo2",
        "systolic",
        "diastolic",
        "medication",
    ],
    delimiter: b',',
    ts_format: TsFormat::NewYorkLocal,
    numeric: &[3, 4, 5, 6],
    hours: 12,
};

/// One dose is due in every window of this length.
pub(crate) const DOSE_WINDOW: Duration = Duration::hours(6);

struct Patient {
    heart_rate: f64,
    spo2: f64,
    systolic: f64,
    diastolic: f64,
    medication: &'static str,
}

struct Vitals {
    heart_rate: i64,
    spo2: i64,
    systolic: i64,
    diastolic: i64,
}

struct Ward {
    patients: Vec<Patient>,
}

impl Ward {
    fn new(rng: &mut Rng, rows: usize) -> Self {
        let n = (rows / 150).clamp(10, 30);
        let patients = (0..n)
            .map(|_| Patient {
                heart_rate: between(rng, 62.0, 88.0),
                spo2: between(rng, 95.5, 98.5),
                systolic: between(rng, 112.0, 138.0),
                diastolic: between(rng, 70.0, 86.0),
                medication: if chance(rng, 0.5) {
                    "trialdrug-10mg"
                } else {
                    "trialdrug-20mg"
                },
            })
            .collect();
        Ward { patients }
    }

    fn reading(&self, rng: &mut Rng, patient: usize) -> Vitals {
        let p = &self.patients[patient];
        Vitals {
            heart_rate: bell(rng, p.heart_rate, 3.0) as i64,
            spo2: (bell(rng, p.spo2, 0.6) as i64).min(100),
            systolic: bell(rng, p.systolic, 4.0) as i64,
            diastolic: bell(rng, p.diastolic, 3.0) as i64,
        }
    }
}

fn patient_id(patient: usize) -> String {
    format!("P{:03}", patient + 1)
}

fn vitals_fields(patient: usize, v: &Vitals) -> Vec<String> {
    vec![
        patient_id(patient),
        "vitals".to_owned(),
        v.heart_rate.to_string(),
        v.spo2.to_string(),
        v.systolic.to_string(),
        v.diastolic.to_string(),
        String::new(),
    ]
}

fn dose_fields(patient: usize, medication: &str) -> Vec<String> {
    let mut fields = vec![patient_id(patient), "dose".to_owned()];
    fields.extend(std::iter::repeat_n(String::new(), 4));
    fields.push(medication.to_owned());
    fields
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let ward = Ward::new(rng, opts.rows);
    let n = ward.patients.len();

    // The dose windows overlapping the range, cut to it.
    let mut windows = Vec::new();
    let mut w = window_start(whole.start, DOSE_WINDOW);
    while w < whole.end {
        windows.push(Span {
            start: w.max(whole.start),
            end: (w + DOSE_WINDOW).min(whole.end),
        });
        w += DOSE_WINDOW;
    }
    // A few missed doses, in windows the range covers whole, different patients.
    let full: Vec<usize> = (0..windows.len())
        .filter(|&i| windows[i].len_ms() == DOSE_WINDOW.num_milliseconds())
        .collect();
    let candidates = if full.is_empty() {
        (0..windows.len()).collect()
    } else {
        full
    };
    let mut missed: Vec<(usize, usize)> = Vec::new();
    let first = below(rng, n);
    for k in 0..(n / 6).max(2) {
        let window = candidates[below(rng, candidates.len())];
        missed.push(((first + k * 3) % n, window));
    }

    let mut rows = Vec::with_capacity(opts.rows);
    'doses: for (wi, window) in windows.iter().enumerate() {
        for patient in 0..n {
            if rows.len() >= opts.rows / 2 {
                break 'doses;
            }
            if missed.contains(&(patient, wi)) {
                continue;
            }
            // Around the middle of the window, when the round comes by.
            let len = window.len_ms();
            let at = window.start + Duration::milliseconds(int_between(rng, len / 5, len * 4 / 5));
            rows.push(Row::new(
                at,
                dose_fields(patient, ward.patients[patient].medication),
            ));
        }
    }

    // Monitors report on a schedule, a few readings per file are alarming.
    let left = opts.rows - rows.len();
    let mut readings: Vec<(DateTime<Utc>, usize, Vitals)> = Vec::with_capacity(left);
    for (patient, count) in shares(left, n).into_iter().enumerate() {
        for ts in schedule(rng, whole, count) {
            readings.push((ts, patient, ward.reading(rng, patient)));
        }
    }
    for span in &spans {
        let inside: Vec<usize> = (0..readings.len())
            .filter(|&i| span.contains(readings[i].0))
            .collect();
        if inside.len() < 30 {
            continue;
        }
        for kind in 0..3 {
            let v = &mut readings[inside[below(rng, inside.len())]].2;
            match kind {
                0 => v.heart_rate = int_between(rng, 122, 150),
                1 => v.spo2 = int_between(rng, 84, 89),
                _ => {
                    v.systolic = int_between(rng, 182, 205);
                    v.diastolic = int_between(rng, 95, 110);
                }
            }
        }
    }
    rows.extend(
        readings
            .iter()
            .map(|(ts, p, v)| Row::new(*ts, vitals_fields(*p, v))),
    );

    // Bad and late rows: ordinary readings (never doses, so no missed dose gets filled).
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, _| {
        let patient = below(rng, n);
        vitals_fields(patient, &ward.reading(rng, patient))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::Vitals;

    #[test]
    fn some_patients_miss_a_dose_while_vitals_keep_coming() {
        for rows in small_runs(UC) {
            // (patient, dose window) -> (vitals, doses)
            let mut windows: BTreeMap<(String, DateTime<Utc>), (usize, usize)> = BTreeMap::new();
            for r in &rows {
                let key = (
                    r.get("patient_id", UC).to_owned(),
                    window_start(r.ts, DOSE_WINDOW),
                );
                let entry = windows.entry(key).or_default();
                match r.get("kind", UC) {
                    "vitals" => {
                        assert!(r.get("medication", UC).is_empty());
                        entry.0 += 1;
                    }
                    "dose" => {
                        assert!(r.get("heart_rate", UC).is_empty() && r.get("spo2", UC).is_empty());
                        assert!(r.get("medication", UC).starts_with("trialdrug-"));
                        entry.1 += 1;
                    }
                    other => panic!("kind {other}"),
                }
            }
            assert_eq!(windows.len(), 13 * 2, "13 patients, two 6-hour windows");
            let missed = windows
                .values()
                .filter(|(vitals, doses)| *vitals > 20 && *doses == 0)
                .count();
            assert!((2..=4).contains(&missed), "{missed}");
            assert!(windows.values().all(|(_, doses)| *doses <= 1));
        }
    }

    #[test]
    fn local_new_york_time_and_a_few_abnormal_readings() {
        for rows in small_runs(UC) {
            // 2026-11-20T00:00Z is 19:00 the evening before in New York (EST, UTC-5).
            assert!(
                rows[0].fields[0].starts_with("2026-11-19 19:0"),
                "{}",
                rows[0].fields[0]
            );
            let int = |r: &crate::testkit::Parsed, c| r.get(c, UC).parse::<i64>().ok();
            let count =
                |f: &dyn Fn(&crate::testkit::Parsed) -> bool| rows.iter().filter(|r| f(r)).count();
            assert!((3..=8).contains(&count(&|r| int(r, "heart_rate").is_some_and(|v| v > 120))));
            assert!((3..=8).contains(&count(&|r| int(r, "spo2").is_some_and(|v| v < 90))));
            assert!((3..=8).contains(&count(&|r| int(r, "systolic").is_some_and(|v| v > 180))));
        }
    }
}
