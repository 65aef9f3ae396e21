//! BPS reference data (514 regencies with their UTC offset, 7,215 kecamatan), compiled
//! into the binary so the simulator, the daily windows and the messages agree on names
//! and time zones without any file at run time. Source and licence: `data/README.md`.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::FixedOffset;

const REGENCIES_CSV: &str = include_str!("../data/regencies.csv");
const DISTRICTS_CSV: &str = include_str!("../data/districts.csv");

#[derive(Debug, Clone)]
pub struct Regency {
    pub code: String,
    pub name: String,
    pub province_code: String,
    pub province_name: String,
    /// WIB +07:00, WITA +08:00 or WIT +09:00; Indonesia keeps no daylight saving.
    pub utc_offset: FixedOffset,
}

#[derive(Debug, Clone)]
pub struct District {
    pub code: String,
    pub regency_code: String,
    pub name: String,
}

pub struct Regions {
    regencies: Vec<Regency>,
    by_code: HashMap<String, usize>,
    districts_by_regency: HashMap<String, Vec<District>>,
}

fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

impl Regions {
    /// The embedded reference data; parsed once per process.
    pub fn get() -> &'static Regions {
        static REGIONS: OnceLock<Regions> = OnceLock::new();
        REGIONS.get_or_init(|| Regions::parse(REGENCIES_CSV, DISTRICTS_CSV))
    }

    fn parse(regencies_csv: &str, districts_csv: &str) -> Regions {
        let mut regencies = Vec::new();
        for line in regencies_csv.lines().skip(1).filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.split(',').collect();
            // The embedded file is part of the build; a malformed line is a build error
            // caught by the tests, never user input.
            let utc_offset = parse_offset(f[4]).expect("regencies.csv: bad utc_offset");
            regencies.push(Regency {
                code: f[0].to_string(),
                name: f[1].to_string(),
                province_code: f[2].to_string(),
                province_name: f[3].to_string(),
                utc_offset,
            });
        }
        let by_code = regencies
            .iter()
            .enumerate()
            .map(|(i, r)| (r.code.clone(), i))
            .collect();
        let mut districts_by_regency: HashMap<String, Vec<District>> = HashMap::new();
        for line in districts_csv.lines().skip(1).filter(|l| !l.is_empty()) {
            let mut f = line.splitn(3, ',');
            let (Some(code), Some(regency_code), Some(name)) = (f.next(), f.next(), f.next())
            else {
                continue;
            };
            districts_by_regency
                .entry(regency_code.to_string())
                .or_default()
                .push(District {
                    code: code.to_string(),
                    regency_code: regency_code.to_string(),
                    name: name.to_string(),
                });
        }
        Regions {
            regencies,
            by_code,
            districts_by_regency,
        }
    }

    pub fn regency(&self, code: &str) -> Option<&Regency> {
        self.by_code.get(code).map(|&i| &self.regencies[i])
    }

    pub fn regencies(&self) -> &[Regency] {
        &self.regencies
    }

    pub fn districts(&self, regency_code: &str) -> &[District] {
        self.districts_by_regency
            .get(regency_code)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// UTC offset of a regency; unknown codes fall back to WIB, the zone of most KPM.
    pub fn offset_of(&self, regency_code: &str) -> FixedOffset {
        self.regency(regency_code)
            .map(|r| r.utc_offset)
            .unwrap_or_else(wib)
    }
}

/// Western Indonesian Time, +07:00.
pub fn wib() -> FixedOffset {
    FixedOffset::east_opt(7 * 3600).expect("valid offset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_every_regency_and_district_with_its_zone() {
        let r = Regions::get();
        assert_eq!(r.regencies().len(), 514);
        let total: usize = r
            .regencies()
            .iter()
            .map(|g| r.districts(&g.code).len())
            .sum();
        assert_eq!(total, 7215);
        assert_eq!(r.offset_of("3604").local_minus_utc(), 7 * 3600);
        assert_eq!(r.offset_of("7371").local_minus_utc(), 8 * 3600);
        assert_eq!(r.offset_of("9471").local_minus_utc(), 9 * 3600);
        assert_eq!(r.regency("3604").unwrap().name, "Kabupaten Serang");
    }
}
