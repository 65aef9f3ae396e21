//! The official ceiling on rice (HET, premium grade) the simulated outlets respect: an
//! ordinary outlet never charges a KPM more than the law allows, so a sale above it in a
//! simulated history is an injected markup. Read from the same files the rules read
//! (`rules/tables/`), compiled in.

use chrono::NaiveDate;

const REFERENCE_PRICES_CSV: &str = include_str!("../../../rules/tables/reference_prices.csv");
const PRICE_ZONES_CSV: &str = include_str!("../../../rules/tables/price_zones.csv");

/// The premium-rice HET of a province's zone on a date; `None` where no ceiling is known
/// (a province missing from the zone table, a date before the first regulation).
pub(crate) fn premium_rice(province_code: &str, date: NaiveDate) -> Option<i64> {
    let zone = PRICE_ZONES_CSV
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(','))
        .find(|(province, _)| *province == province_code)
        .map(|(_, zone)| zone.trim())?;
    REFERENCE_PRICES_CSV.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.splitn(8, ',').collect();
        let [commodity, grade, _unit, row_zone, from, to, price, ..] = f.as_slice() else {
            return None;
        };
        let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
        let in_force = day(from).is_some_and(|f| f <= date)
            && (to.is_empty() || day(to).is_some_and(|t| date <= t));
        (*commodity == "BERAS" && *grade == "premium" && *row_zone == zone && in_force)
            .then(|| price.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_premium_ceiling_follows_the_zone_and_the_regulation_in_force() {
        let d = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // Banten is zone 1, Aceh zone 2, Papua zone 3; Perbadan 7/2023 from 14 March 2023.
        assert_eq!(premium_rice("36", d("2023-03-13")), Some(12_800));
        assert_eq!(premium_rice("36", d("2023-03-14")), Some(13_900));
        assert_eq!(premium_rice("11", d("2023-06-01")), Some(14_400));
        assert_eq!(premium_rice("91", d("2024-06-01")), Some(15_800));
        assert_eq!(premium_rice("36", d("2016-01-01")), None);
        assert_eq!(premium_rice("99", d("2023-06-01")), None);
    }
}
