//! `iot`: machine sensor readings (temperature, vibration, pressure) with epoch-millisecond
//! timestamps; plants overheat readings (> 90 °C) and, in every file, a device whose
//! per-minute average temperature jumps by more than 20 % and stays high for minutes.

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    aligned_starts, assemble, bell, below, between, int_between, schedule, shares, Layout, Rng,
    Row, Span, TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Iot,
    prefix: "iot",
    header: &[
        "ts",
        "device_id",
        "site",
        "temperature",
        "vibration",
        "pressure",
    ],
    delimiter: b',',
    ts_format: TsFormat::EpochMillis,
    numeric: &[3, 4, 5],
    hours: 6,
};

const SITES: [&str; 3] = ["plant-a", "plant-b", "plant-c"];

/// How long a drifting device stays hot, then how long it takes to cool back down.
const HOT: Duration = Duration::minutes(6);
const COOL: Duration = Duration::minutes(5);
/// While drifting, a device reports every 20 s, from 3 minutes before the jump.
const DENSE_EVERY: Duration = Duration::seconds(20);
const DENSE_BEFORE: Duration = Duration::minutes(3);
const OVERHEATS_PER_FILE: usize = 2;

struct Device {
    site: &'static str,
    temperature: f64,
    vibration: f64,
    pressure: f64,
}

/// A coolant failure: the device's temperature jumps by `factor` at `at` (minute-aligned).
struct Drift {
    device: usize,
    at: DateTime<Utc>,
    factor: f64,
}

struct Plant {
    devices: Vec<Device>,
    drifts: Vec<Drift>,
}

impl Plant {
    fn new(rng: &mut Rng, rows: usize) -> Self {
        // 20 devices at 2000 rows, growing with the square root of the size.
        let n = if rows < 2000 {
            (rows / 100).clamp(5, 20)
        } else {
            20 * (rows / 2000).isqrt()
        };
        let devices = (0..n)
            .map(|i| Device {
                site: SITES[i % SITES.len()],
                temperature: between(rng, 60.0, 70.0),
                vibration: between(rng, 1.2, 3.5),
                pressure: between(rng, 180.0, 320.0),
            })
            .collect();
        Plant {
            devices,
            drifts: Vec::new(),
        }
    }

    /// How much hotter than its baseline the device runs at `ts` (1.0 = normal).
    fn heat(&self, device: usize, ts: DateTime<Utc>) -> f64 {
        for drift in self.drifts.iter().filter(|d| d.device == device) {
            if ts >= drift.at && ts < drift.at + HOT {
                return drift.factor;
            }
            let cooling = ts - (drift.at + HOT);
            if cooling >= Duration::zero() && cooling < COOL {
                let left = 1.0 - cooling.num_milliseconds() as f64 / COOL.num_milliseconds() as f64;
                return 1.0 + (drift.factor - 1.0) * left;
            }
        }
        1.0
    }

    fn reading(&self, rng: &mut Rng, device: usize, ts: DateTime<Utc>) -> Vec<String> {
        let d = &self.devices[device];
        let heat = self.heat(device, ts);
        let temperature = d.temperature * heat + bell(rng, 0.0, 0.25);
        // A hot machine shakes more and loses some pressure.
        let vibration = d.vibration * (1.0 + (heat - 1.0) * 6.0) + bell(rng, 0.0, 0.08);
        let pressure = d.pressure * (1.0 - (heat - 1.0) * 0.3) + bell(rng, 0.0, 1.5);
        fields(device, d.site, temperature, vibration.max(0.05), pressure)
    }
}

fn fields(
    device: usize,
    site: &str,
    temperature: f64,
    vibration: f64,
    pressure: f64,
) -> Vec<String> {
    vec![
        format!("dev-{:03}", device + 1),
        site.to_owned(),
        format!("{temperature:.1}"),
        format!("{vibration:.2}"),
        format!("{pressure:.1}"),
    ]
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let mut plant = Plant::new(rng, opts.rows);
    let mut rows = Vec::with_capacity(opts.rows);

    // One drift per file (different devices), with room for the dense readings around it.
    let dense = ((DENSE_BEFORE + HOT).num_seconds() / DENSE_EVERY.num_seconds()) as usize;
    let starts = aligned_starts(
        rng,
        &spans,
        Duration::minutes(1),
        DENSE_BEFORE,
        HOT + COOL,
        1,
    );
    for (i, at) in starts.into_iter().enumerate() {
        if rows.len() + dense > opts.rows / 3 {
            break;
        }
        let device = (i * 7 + below(rng, 3)) % plant.devices.len();
        // > 20 % minute over minute even with noise, but below the 90 °C overheat line.
        let baseline = plant.devices[device].temperature;
        let factor = between(rng, 1.26, 1.28).min(89.0 / baseline);
        plant.drifts.push(Drift { device, at, factor });
        for k in 0..dense as i32 {
            let ts = at - DENSE_BEFORE
                + DENSE_EVERY * k
                + Duration::milliseconds(int_between(rng, 0, 1999));
            rows.push(Row::new(ts, plant.reading(rng, device, ts)));
        }
    }

    // Overheat spikes: a couple per file on random devices.
    for span in &spans {
        for _ in 0..OVERHEATS_PER_FILE {
            if rows.len() >= opts.rows / 2 {
                break;
            }
            let device = below(rng, plant.devices.len());
            let d = &plant.devices[device];
            let ts = span.random_time(rng);
            let temperature = between(rng, 90.5, 97.5);
            let vibration = between(rng, 6.0, 11.0);
            let pressure = d.pressure * between(rng, 0.85, 0.95);
            rows.push(Row::new(
                ts,
                fields(device, d.site, temperature, vibration, pressure),
            ));
        }
    }

    // Everyone reports on a schedule.
    let left = opts.rows - rows.len();
    for (device, count) in shares(left, plant.devices.len()).into_iter().enumerate() {
        for ts in schedule(rng, whole, count) {
            rows.push(Row::new(ts, plant.reading(rng, device, ts)));
        }
    }

    let plant = &plant;
    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, ts| {
        let device = below(rng, plant.devices.len());
        plant.reading(rng, device, ts)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::Iot;

    #[test]
    fn a_device_drifts_more_than_20_percent_minute_over_minute_in_every_file() {
        for rows in small_runs(UC) {
            // (device, minute) -> (file, sum, count)
            let mut minutes: BTreeMap<(String, i64), (usize, f64, usize)> = BTreeMap::new();
            for r in &rows {
                let t: f64 = r.get("temperature", UC).parse().unwrap();
                let e = minutes
                    .entry((r.get("device_id", UC).to_owned(), r.ts.timestamp() / 60))
                    .or_insert((r.file, 0.0, 0));
                e.1 += t;
                e.2 += 1;
            }
            let avg = |device: &str, minute: i64| {
                minutes
                    .get(&(device.to_owned(), minute))
                    .map(|(_, sum, n)| sum / *n as f64)
            };
            let mut drifting_files = Vec::new();
            for ((device, minute), (file, _, _)) in &minutes {
                let Some(before) = avg(device, *minute) else {
                    continue;
                };
                // Jumps > 20 % and stays that high for the next 3 minutes.
                let stays = (1..=4).all(|k| {
                    avg(device, minute + k)
                        .is_some_and(|after| after > before * 1.2 && after < 90.0)
                });
                if stays && before < 75.0 {
                    drifting_files.push(*file);
                }
            }
            drifting_files.sort();
            drifting_files.dedup();
            assert_eq!(drifting_files, vec![0, 1, 2]);
        }
    }

    #[test]
    fn overheats_are_few_and_values_are_plausible() {
        for rows in small_runs(UC) {
            let temps: Vec<f64> = rows
                .iter()
                .map(|r| r.get("temperature", UC).parse().unwrap())
                .collect();
            let hot = temps.iter().filter(|t| **t > 90.0).count();
            assert!((3..=10).contains(&hot), "{hot}");
            let normal = temps.iter().filter(|t| (58.0..=76.0).contains(*t)).count();
            assert!(normal * 100 > rows.len() * 90, "{normal} of {}", rows.len());
            let mut devices: Vec<_> = rows
                .iter()
                .map(|r| r.get("device_id", UC).to_owned())
                .collect();
            devices.sort();
            devices.dedup();
            assert_eq!(devices.len(), 20);
            assert_eq!(devices[0], "dev-001");
            for r in &rows {
                let site = ["plant-a", "plant-b", "plant-c"].contains(&r.get("site", UC));
                assert!(site);
                assert!(r.fields[0].parse::<i64>().is_ok());
                assert_eq!(
                    r.get("vibration", UC).split('.').nth(1).map(str::len),
                    Some(2)
                );
            }
        }
    }
}
