//! `rides`: ride requests and drivers becoming available per zone; demand and supply
//! balance except in a few zones' 5-minute windows (UTC-aligned, two per file) where
//! requests outnumber distinct available drivers at least three to one.

use chrono::{DateTime, Duration, Utc};

use crate::common::{
    aligned_starts, assemble, below, chance, csv_string, int_between, time_between, weighted,
    window_start, Layout, Rng, Row, Span, TsFormat,
};
use crate::{GenOptions, GeneratedFile, UseCase};

pub(crate) const LAYOUT: Layout = Layout {
    use_case: UseCase::Rides,
    prefix: "rides",
    header: &["ts", "event", "zone_id", "rider_id", "driver_id"],
    delimiter: b',',
    ts_format: TsFormat::Rfc3339,
    numeric: &[],
    hours: 6,
};

/// (name, borough, how busy) of `Z01`..`Z20`.
const ZONES: [(&str, &str, u32); 20] = [
    ("Downtown", "Central", 10),
    ("Airport", "East", 9),
    ("Central Station", "Central", 9),
    ("Financial District", "Central", 7),
    ("Midtown", "Central", 7),
    ("Old Town", "Central", 5),
    ("University", "North", 5),
    ("Stadium", "North", 4),
    ("Riverside", "West", 4),
    ("Harbor", "South", 4),
    ("Convention Center", "East", 4),
    ("Tech Park", "North", 4),
    ("Chinatown", "Central", 4),
    ("Arts District", "West", 3),
    ("Hospital District", "North", 3),
    ("Museum Mile", "West", 3),
    ("West End", "West", 3),
    ("Lakeside", "South", 2),
    ("Industrial Park", "South", 2),
    ("Northgate", "North", 2),
];

const WINDOW: Duration = Duration::minutes(5);
const SURGES_PER_FILE: usize = 2;

fn zone_id(zone: usize) -> String {
    format!("Z{:02}", zone + 1)
}

/// The zone lookup table as CSV (`zone_id,name,borough`, `Z01`..`Z20`); the same bytes as
/// `examples/lookups/zones.csv`.
pub fn zones_lookup_csv() -> String {
    let rows = ZONES
        .iter()
        .enumerate()
        .map(|(i, (name, borough, _))| vec![zone_id(i), (*name).to_owned(), (*borough).to_owned()]);
    csv_string(&["zone_id", "name", "borough"], rows)
}

struct City {
    /// Drivers `drv-0001`.. each work one zone: zone `z` has drivers `z, z + 20, ...`.
    drivers: usize,
    riders: usize,
}

impl City {
    fn new(rows: usize) -> Self {
        City {
            drivers: (rows / 8).clamp(100, 4000),
            riders: (rows / 2).max(200),
        }
    }

    fn request(&self, rng: &mut Rng, zone: usize) -> Vec<String> {
        let rider = below(rng, self.riders);
        vec![
            "request".to_owned(),
            zone_id(zone),
            format!("r-{:05}", rider + 1),
            String::new(),
        ]
    }

    fn available(driver: usize, zone: usize) -> Vec<String> {
        vec![
            "driver_available".to_owned(),
            zone_id(zone),
            String::new(),
            format!("drv-{:04}", driver + 1),
        ]
    }

    /// `count` distinct drivers of the zone.
    fn drivers_of(&self, rng: &mut Rng, zone: usize, count: usize) -> Vec<usize> {
        let pool = (self.drivers - zone).div_ceil(ZONES.len());
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < count.min(pool) {
            let driver = zone + ZONES.len() * below(rng, pool);
            if !picked.contains(&driver) {
                picked.push(driver);
            }
        }
        picked
    }

    /// `requests` requests and `drivers` distinct available drivers in one zone between
    /// `from` and `to`.
    #[allow(clippy::too_many_arguments)]
    fn cluster(
        &self,
        rng: &mut Rng,
        zone: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        requests: usize,
        drivers: usize,
        rows: &mut Vec<Row>,
    ) {
        for _ in 0..requests {
            let ts = time_between(rng, from, to);
            rows.push(Row::new(ts, self.request(rng, zone)));
        }
        for driver in self.drivers_of(rng, zone, drivers) {
            let ts = time_between(rng, from, to);
            rows.push(Row::new(ts, City::available(driver, zone)));
        }
    }
}

pub(crate) fn generate(opts: &GenOptions, rng: &mut Rng) -> Vec<GeneratedFile> {
    let spans = LAYOUT.spans(opts);
    let whole = Span::union(&spans);
    let city = City::new(opts.rows);
    let weights: Vec<(usize, u32)> = ZONES.iter().enumerate().map(|(i, z)| (i, z.2)).collect();
    let mut rows = Vec::with_capacity(opts.rows);

    // Surges: a flight lands, a game ends. Busy zones, no two in one window.
    let mut surges: Vec<(usize, DateTime<Utc>)> = Vec::new();
    for start in aligned_starts(
        rng,
        &spans,
        WINDOW,
        Duration::zero(),
        Duration::zero(),
        SURGES_PER_FILE,
    ) {
        let requests = int_between(rng, 10, 15) as usize;
        let drivers = int_between(rng, 1, (requests / 3).min(3) as i64) as usize;
        if rows.len() + requests + drivers > opts.rows / 4 {
            break;
        }
        let zone = loop {
            let zone = *weighted(rng, &weights[..8]);
            if !surges.contains(&(zone, start)) {
                break zone;
            }
        };
        surges.push((zone, start));
        city.cluster(
            rng,
            zone,
            start,
            start + WINDOW,
            requests,
            drivers,
            &mut rows,
        );
    }

    // Elsewhere: small groups of requests met by at least as many drivers.
    while rows.len() < opts.rows {
        let zone = *weighted(rng, &weights);
        let start = window_start(whole.random_time(rng), WINDOW);
        if surges.contains(&(zone, start)) {
            continue;
        }
        let (from, to) = (start.max(whole.start), (start + WINDOW).min(whole.end));
        let requests = *weighted(rng, &[(1, 5), (2, 3), (3, 2)]);
        let drivers = requests + usize::from(chance(rng, 0.4));
        let left = opts.rows - rows.len();
        if left >= requests + drivers {
            city.cluster(rng, zone, from, to, requests, drivers, &mut rows);
        } else {
            // Too few rows left for a whole group: drivers only, never a shortage.
            city.cluster(rng, zone, from, to, 0, left, &mut rows);
        }
    }

    assemble(&LAYOUT, &spans, rows, opts, rng, &mut |rng, _| {
        let zone = *weighted(rng, &weights);
        if chance(rng, 0.5) {
            city.request(rng, zone)
        } else {
            let driver = city.drivers_of(rng, zone, 1)[0];
            City::available(driver, zone)
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;
    use crate::testkit::small_runs;

    const UC: UseCase = UseCase::Rides;

    #[test]
    fn lookup_matches_the_checked_in_file() {
        let csv = zones_lookup_csv();
        let lines: Vec<_> = csv.lines().collect();
        assert_eq!(lines[0], "zone_id,name,borough");
        assert_eq!(lines[1], "Z01,Downtown,Central");
        assert_eq!(lines.len(), 21);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/lookups/zones.csv"
        );
        if std::env::var_os("CSVFLOW_GEN_BLESS").is_some() {
            std::fs::write(path, &csv).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(path).unwrap(),
            csv,
            "run with CSVFLOW_GEN_BLESS=1"
        );
    }

    #[test]
    fn shortages_in_a_few_zone_windows_balance_elsewhere() {
        for rows in small_runs(UC) {
            // (zone, window) -> (file, requests, drivers)
            let mut windows: BTreeMap<(String, i64), (usize, usize, BTreeSet<String>)> =
                BTreeMap::new();
            for r in &rows {
                let key = (r.get("zone_id", UC).to_owned(), r.ts.timestamp() / 300);
                let entry = windows.entry(key).or_insert((r.file, 0, BTreeSet::new()));
                match r.get("event", UC) {
                    "request" => {
                        assert!(
                            !r.get("rider_id", UC).is_empty() && r.get("driver_id", UC).is_empty()
                        );
                        entry.1 += 1;
                    }
                    "driver_available" => {
                        assert!(r.get("rider_id", UC).is_empty());
                        entry.2.insert(r.get("driver_id", UC).to_owned());
                    }
                    other => panic!("event {other}"),
                }
            }
            let short: Vec<_> = windows
                .values()
                .filter(|(_, requests, drivers)| {
                    !drivers.is_empty() && *requests >= 3 * drivers.len()
                })
                .collect();
            assert_eq!(short.len(), 6, "two per file");
            for f in 0..3 {
                assert_eq!(short.iter().filter(|w| w.0 == f).count(), 2);
            }
            let no_driver = windows
                .values()
                .filter(|(_, requests, d)| *requests > 0 && d.is_empty());
            assert_eq!(
                no_driver.count(),
                0,
                "every window with requests has a driver"
            );
            let zones: BTreeSet<_> = rows.iter().map(|r| r.get("zone_id", UC)).collect();
            assert_eq!(zones.len(), 20);
        }
    }
}
