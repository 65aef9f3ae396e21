//! From drafts to the wire: records sorted by event time and numbered in that order
//! (ids grow with time, as a bank's would), then delivered the way a real topic
//! delivers them: locally out of order within `--max-disorder-secs`, with a few
//! redeliveries, plus the deliberately malformed records. Also the folder writer and
//! the (key, bytes) view used to produce to Kafka.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::anomalies::{dt, params};
use super::behaviour::{Drafts, TxnDraft, NONE};
use super::config::SimConfig;
use super::error::{Error, Result};
use super::world::{stochastic_round, sub_rng, World, DAY};
use super::{History, Malformed};
use pantau_core::model::{
    category, Bank, Disbursement, Outlet, OutletStatus, Stream, Transaction, Transfer, Truth,
};

const TAG_DISORDER: u64 = 30;
const TAG_DUPLICATE: u64 = 31;
const TAG_MALFORMED: u64 = 32;
const TAG_LATE_BATCH: u64 = 33;

fn bank_slot(b: Bank) -> usize {
    b as usize
}

/// Ids of the form `BRI-0000000001`, counted per bank in the given order.
struct Counter {
    prefix: &'static str,
    next: [u64; 5],
}

impl Counter {
    fn new(prefix: &'static str) -> Self {
        Counter {
            prefix,
            next: [0; 5],
        }
    }
    fn id(&mut self, bank: Bank) -> String {
        let n = &mut self.next[bank_slot(bank)];
        *n += 1;
        format!("{}{}-{:010}", self.prefix, bank.as_str(), n)
    }
}

/// Stable sort by event time, so ties keep generation order and runs are reproducible.
fn time_order(times: &[i64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..times.len()).collect();
    idx.sort_by_key(|&i| times[i]);
    idx
}

/// Local shuffle bounded by `max`: each record is delayed by a random 0..=max seconds
/// and the stream re-sorted on that key. For any two records delivered in order a, b:
/// t_a + u_a <= t_b + u_b, hence t_a - t_b <= u_b - u_a <= max.
fn disorder<T>(rng: &mut StdRng, recs: Vec<(i64, T)>, max: u64) -> Vec<(i64, T)> {
    disorder_with_uploads(rng, recs, max, |_| None)
}

/// [`disorder`], except that a record `uploaded` names an instant for arrives then, with
/// the rest of its terminal's batch (a terminal that was offline and sent a day's sales
/// at once).
fn disorder_with_uploads<T>(
    rng: &mut StdRng,
    recs: Vec<(i64, T)>,
    max: u64,
    uploaded: impl Fn(&T) -> Option<i64>,
) -> Vec<(i64, T)> {
    let keys: Vec<i64> = recs
        .iter()
        .map(|(t, rec)| {
            let jittered = if max == 0 {
                *t
            } else {
                t + rng.random_range(0..=max as i64)
            };
            uploaded(rec).map_or(jittered, |at| at.max(jittered))
        })
        .collect();
    // Sorting indices, not records: records are large and would be moved many times.
    let order = time_order(&keys);
    let mut slots: Vec<Option<(i64, T)>> = recs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

pub(crate) fn finish(
    cfg: &SimConfig,
    world: &World,
    drafts: Drafts,
    mut truth: Vec<Truth>,
) -> Result<History> {
    let reg_of_outlet = |o: u32| &world.regencies[world.outlets[o as usize].regency];

    // Transactions.
    let Drafts {
        txns,
        disbs,
        transfers,
    } = drafts;
    let times: Vec<i64> = txns.iter().map(|d| d.t).collect();
    let order = time_order(&times);
    let mut ids: Vec<String> = vec![String::new(); txns.len()];
    let mut counter = Counter::new("");
    for &i in &order {
        let bank = world.outlets[txns[i].outlet as usize].bank;
        ids[i] = counter.id(bank);
    }
    let mut sorted: Vec<(i64, Transaction)> = Vec::with_capacity(txns.len());
    let mut txns: Vec<Option<TxnDraft>> = txns.into_iter().map(Some).collect();
    for &i in &order {
        let Some(d) = txns[i].take() else { continue };
        let out = &world.outlets[d.outlet as usize];
        let reg = reg_of_outlet(d.outlet);
        sorted.push((
            d.t,
            Transaction {
                txn_id: ids[i].clone(),
                bank: out.bank,
                occurred_at: dt(d.t, reg.offset),
                outlet_id: out.id.clone(),
                terminal_id: out.terminals[d.terminal as usize].clone(),
                regency_code: reg.code.clone(),
                card_id: world.cards[d.card as usize].clone(),
                payment: d.payment,
                kind: d.kind,
                reverses_txn_id: (d.reverses != NONE).then(|| ids[d.reverses as usize].clone()),
                amount: d.amount,
                items: d.items,
                balance_after: d.balance_after,
            },
        ));
    }
    drop(ids);
    let uploads = late_batches(cfg, world, &sorted);
    let mut rng = sub_rng(cfg.seed, TAG_DISORDER, 0);
    let sorted = disorder_with_uploads(&mut rng, sorted, cfg.max_disorder_secs, |t| {
        let day = t.occurred_at.date_naive();
        uploads
            .get(t.terminal_id.as_str())?
            .iter()
            .find(|(d, _)| *d == day)
            .map(|(_, at)| *at)
    });
    let (transactions, redeliveries) = redeliver(cfg, sorted);

    // Disbursements.
    let times: Vec<i64> = disbs.iter().map(|d| d.t).collect();
    let mut counter = Counter::new("DSB-");
    let mut disb_sorted = Vec::with_capacity(disbs.len());
    for i in time_order(&times) {
        let d = &disbs[i];
        let reg = &world.regencies[d.regency as usize];
        let period = &reg.periods[d.period as usize];
        disb_sorted.push((
            d.t,
            Disbursement {
                disbursement_id: counter.id(d.bank),
                bank: d.bank,
                card_id: world.cards[d.card as usize].clone(),
                regency_code: reg.code.clone(),
                period: period.label.clone(),
                months: period.months as u8,
                amount: period.amount,
                credited_at: dt(d.t, reg.offset),
            },
        ));
    }
    let mut rng = sub_rng(cfg.seed, TAG_DISORDER, 1);
    let disbursements: Vec<Disbursement> = disorder(&mut rng, disb_sorted, cfg.max_disorder_secs)
        .into_iter()
        .map(|(_, d)| d)
        .collect();

    // Transfers.
    let times: Vec<i64> = transfers.iter().map(|d| d.t).collect();
    let mut counter = Counter::new("TRF-");
    let mut trf_sorted = Vec::with_capacity(transfers.len());
    for i in time_order(&times) {
        let d = &transfers[i];
        let out = &world.outlets[d.outlet as usize];
        let reg = reg_of_outlet(d.outlet);
        trf_sorted.push((
            d.t,
            Transfer {
                transfer_id: counter.id(out.bank),
                bank: out.bank,
                outlet_id: out.id.clone(),
                regency_code: reg.code.clone(),
                occurred_at: dt(d.t, reg.offset),
                counterparty_id: world.counterparties[d.counterparty as usize].clone(),
                amount: d.amount,
            },
        ));
    }
    let mut rng = sub_rng(cfg.seed, TAG_DISORDER, 2);
    let transfers: Vec<Transfer> = disorder(&mut rng, trf_sorted, cfg.max_disorder_secs)
        .into_iter()
        .map(|(_, d)| d)
        .collect();

    // Outlet registry.
    let times: Vec<i64> = world.outlets.iter().map(|o| o.registered_at).collect();
    let mut out_sorted = Vec::with_capacity(world.outlets.len());
    for i in time_order(&times) {
        let o = &world.outlets[i];
        let reg = &world.regencies[o.regency];
        out_sorted.push((
            o.registered_at,
            Outlet {
                outlet_id: o.id.clone(),
                name: o.name.clone(),
                regency_code: reg.code.clone(),
                district_code: o.district.clone(),
                bank: o.bank,
                registered_at: dt(o.registered_at, reg.offset),
                status: OutletStatus::Active,
                kpm_assigned: o.kpm.len() as i64,
            },
        ));
    }
    let mut rng = sub_rng(cfg.seed, TAG_DISORDER, 3);
    let outlets: Vec<Outlet> = disorder(&mut rng, out_sorted, cfg.max_disorder_secs)
        .into_iter()
        .map(|(_, d)| d)
        .collect();

    let malformed = make_malformed(cfg, &transactions, &disbursements, &mut truth)?;

    // Readers diff truth files: keep a stable, meaningful order.
    truth.sort_by(|a, b| {
        (
            a.category.as_str(),
            a.start,
            a.regency_code.as_str(),
            a.entity_id.as_str(),
        )
            .cmp(&(
                b.category.as_str(),
                b.start,
                b.regency_code.as_str(),
                b.entity_id.as_str(),
            ))
    });

    Ok(History {
        transactions,
        disbursements,
        transfers,
        outlets,
        truth,
        malformed,
        redeliveries,
    })
}

/// Terminals that went offline for a local day and uploaded its sales in one batch
/// hours after it ended (`--late-batch-rate` a regency-month, `--late-batch-delay-*`):
/// the upload instant of each such terminal and day. Its own generator, so the rest of
/// the history is the same with late batches or without.
fn late_batches(
    cfg: &SimConfig,
    world: &World,
    sorted: &[(i64, Transaction)],
) -> HashMap<String, Vec<(NaiveDate, i64)>> {
    let mut uploads: HashMap<String, Vec<(NaiveDate, i64)>> = HashMap::new();
    if cfg.late_batch_rate <= 0.0 {
        return uploads;
    }
    let mut rng = sub_rng(cfg.seed, TAG_LATE_BATCH, 0);
    let mut by_cell: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    let regency_of: HashMap<&str, usize> = world
        .regencies
        .iter()
        .enumerate()
        .map(|(r, reg)| (reg.code.as_str(), r))
        .collect();
    for (i, (t, txn)) in sorted.iter().enumerate() {
        if let Some(&r) = regency_of.get(txn.regency_code.as_str()) {
            by_cell
                .entry((r, world.regencies[r].month_of(*t)))
                .or_default()
                .push(i);
        }
    }
    for ((r, _), records) in by_cell {
        let n = stochastic_round(&mut rng, cfg.late_batch_rate);
        let off = world.regencies[r].off;
        for _ in 0..n {
            let Some(&i) = records.choose(&mut rng) else {
                continue;
            };
            let (t, txn) = &sorted[i];
            let day_end = (t + off).div_euclid(DAY) * DAY + DAY - off;
            let hours =
                rng.random_range(cfg.late_batch_delay_min_hours..=cfg.late_batch_delay_max_hours);
            uploads.entry(txn.terminal_id.clone()).or_default().push((
                txn.occurred_at.date_naive(),
                day_end + i64::from(hours) * 3600,
            ));
        }
    }
    uploads
}

/// Repeats a few records a little later, never further than the disorder bound allows:
/// a repeat of record i goes after position j only while every record up to j is at most
/// `max_disorder_secs` newer than it.
fn redeliver(cfg: &SimConfig, recs: Vec<(i64, Transaction)>) -> (Vec<Transaction>, Vec<usize>) {
    let mut rng = sub_rng(cfg.seed, TAG_DUPLICATE, 0);
    let n = recs.len();
    let max = cfg.max_disorder_secs as i64;
    // after[j] = indices of records repeated right after position j.
    let mut after: Vec<(usize, usize)> = Vec::new();
    if cfg.duplicate_rate > 0.0 {
        for i in 0..n {
            if !rng.random_bool(cfg.duplicate_rate) {
                continue;
            }
            let steps = rng.random_range(1..=8);
            let mut j = i;
            let mut newest = recs[i].0;
            while j + 1 < n && j < i + steps {
                newest = newest.max(recs[j + 1].0);
                if newest - recs[i].0 > max {
                    break;
                }
                j += 1;
            }
            after.push((j, i));
        }
    }
    after.sort_unstable();
    let mut out = Vec::with_capacity(n + after.len());
    let mut repeats = Vec::with_capacity(after.len());
    let mut a = 0;
    let dups: Vec<Transaction> = after.iter().map(|&(_, i)| recs[i].1.clone()).collect();
    let mut dups = dups.into_iter();
    for (j, (_, rec)) in recs.into_iter().enumerate() {
        out.push(rec);
        while a < after.len() && after[a].0 == j {
            if let Some(d) = dups.next() {
                repeats.push(out.len());
                out.push(d);
            }
            a += 1;
        }
    }
    (out, repeats)
}

/// The rejection reasons, in the order malformed records cycle through them. `future`
/// (a terminal whose clock says 2099) and `before_program` (one reset to 1970) fall on
/// transactions in the middle of the stream, where a wrong clock does the most harm.
pub const MALFORMED_REASONS: [&str; 10] = [
    "invalid_json",
    "missing_field",
    "wrong_type",
    "unknown_bank",
    "unknown_payment",
    "non_positive_amount",
    "time_without_offset",
    "future",
    "empty_message",
    "before_program",
];

fn make_malformed(
    cfg: &SimConfig,
    txns: &[Transaction],
    disbs: &[Disbursement],
    truth: &mut Vec<Truth>,
) -> Result<Vec<Malformed>> {
    let n = cfg.malformed;
    if n == 0 {
        return Ok(Vec::new());
    }
    if txns.is_empty() {
        return Err(Error::NothingToMalform { malformed: n });
    }
    let mut rng = sub_rng(cfg.seed, TAG_MALFORMED, 0);
    // Every third record goes to disbursements, except reasons only a transaction has.
    let streams: Vec<Stream> = (0..n)
        .map(|k| {
            let reason = MALFORMED_REASONS[k % MALFORMED_REASONS.len()];
            if k % 3 == 2 && reason != "unknown_payment" && !disbs.is_empty() {
                Stream::Disbursements
            } else {
                Stream::Transactions
            }
        })
        .collect();
    let n_t = streams
        .iter()
        .filter(|s| **s == Stream::Transactions)
        .count();
    let n_d = n - n_t;
    let (mut j_t, mut j_d) = (0usize, 0usize);
    let mut out = Vec::with_capacity(n);
    for (k, &stream) in streams.iter().enumerate() {
        let reason = MALFORMED_REASONS[k % MALFORMED_REASONS.len()];
        let id = format!("MAL-{:06}", k + 1);
        let variant = (k / MALFORMED_REASONS.len()) % 2;
        let (len, j, m) = match stream {
            Stream::Transactions => {
                j_t += 1;
                (txns.len(), j_t - 1, n_t)
            }
            _ => {
                j_d += 1;
                (disbs.len(), j_d - 1, n_d)
            }
        };
        // Evenly spread, jittered within each slot.
        let position =
            (((j as f64 + rng.random::<f64>()) / m as f64) * len as f64).floor() as usize;
        let position = position.min(len);
        let neighbour = position.min(len - 1);
        let (mut value, key, regency, when, time_field, id_field) = match stream {
            Stream::Transactions => {
                let t = &txns[neighbour];
                (
                    serde_json::to_value(t).map_err(|e| Error::encode("a transaction", e))?,
                    t.outlet_id.clone(),
                    t.regency_code.clone(),
                    t.occurred_at,
                    "occurred_at",
                    "txn_id",
                )
            }
            _ => {
                let d = &disbs[neighbour];
                (
                    serde_json::to_value(d).map_err(|e| Error::encode("a disbursement", e))?,
                    d.card_id.clone(),
                    d.regency_code.clone(),
                    d.credited_at,
                    "credited_at",
                    "disbursement_id",
                )
            }
        };
        let obj = value
            .as_object_mut()
            .ok_or_else(|| Error::Invariant("records serialize as JSON objects".to_string()))?;
        obj.insert(id_field.to_string(), json!(id));
        let encode = |obj: &serde_json::Map<String, Value>| {
            serde_json::to_string(obj).map_err(|e| Error::encode("a malformed record", e))
        };
        let raw = match reason {
            "invalid_json" => {
                let full = encode(obj)?;
                full[..full.len() * 2 / 3].to_string()
            }
            "missing_field" => {
                obj.remove("amount");
                encode(obj)?
            }
            "wrong_type" => {
                if variant == 0 {
                    obj.insert("amount".to_string(), json!("abc"));
                } else {
                    obj.insert(time_field.to_string(), json!(when.timestamp()));
                }
                encode(obj)?
            }
            "unknown_bank" => {
                obj.insert("bank".to_string(), json!("BCA"));
                encode(obj)?
            }
            "unknown_payment" => {
                obj.insert("payment".to_string(), json!("CASH"));
                encode(obj)?
            }
            "non_positive_amount" => {
                let v = if variant == 0 { 0 } else { -5000 };
                obj.insert("amount".to_string(), json!(v));
                encode(obj)?
            }
            "time_without_offset" => {
                let naive = when.naive_local().format("%Y-%m-%dT%H:%M:%S").to_string();
                obj.insert(time_field.to_string(), Value::String(naive));
                encode(obj)?
            }
            "future" | "before_program" => {
                let year = if reason == "future" { "2099" } else { "1970" };
                let wrong = format!("{year}{}", &when.to_rfc3339()[4..]);
                obj.insert(time_field.to_string(), Value::String(wrong));
                encode(obj)?
            }
            _ => String::new(),
        };
        truth.push(Truth {
            category: category::MALFORMED.to_string(),
            entity_type: "record".to_string(),
            entity_id: id.clone(),
            regency_code: regency,
            start: when,
            end: when,
            outlets: Vec::new(),
            params: params(json!({
                "reason": reason,
                "stream": stream.topic(),
                "raw": raw,
                "position": position,
                "key": key,
            })),
        });
        out.push(Malformed {
            stream,
            position,
            raw,
            key,
            reason,
            id,
        });
    }
    Ok(out)
}

fn key_of_txn(t: &Transaction) -> &str {
    &t.outlet_id
}

/// Calls `f(key, json)` for every record of a stream in file order, malformed included.
pub(crate) fn for_each_record(
    h: &History,
    stream: Stream,
    mut f: impl FnMut(&str, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut mal: Vec<&Malformed> = h.malformed.iter().filter(|m| m.stream == stream).collect();
    mal.sort_by_key(|m| m.position);
    let mut buf = Vec::with_capacity(1024);
    let mut mi = 0;
    let mut emit = |i: usize, rec: Option<(&str, &dyn ErasedSer)>| -> Result<()> {
        while mi < mal.len() && mal[mi].position <= i {
            f(&mal[mi].key, mal[mi].raw.as_bytes())?;
            mi += 1;
        }
        if let Some((key, r)) = rec {
            buf.clear();
            r.write_json(&mut buf)?;
            f(key, &buf)?;
        }
        Ok(())
    };
    match stream {
        Stream::Transactions => {
            for (i, r) in h.transactions.iter().enumerate() {
                emit(i, Some((key_of_txn(r), r)))?;
            }
        }
        Stream::Disbursements => {
            for (i, r) in h.disbursements.iter().enumerate() {
                emit(i, Some((&r.card_id, r)))?;
            }
        }
        Stream::Transfers => {
            for (i, r) in h.transfers.iter().enumerate() {
                emit(i, Some((&r.outlet_id, r)))?;
            }
        }
        Stream::Outlets => {
            for (i, r) in h.outlets.iter().enumerate() {
                emit(i, Some((&r.outlet_id, r)))?;
            }
        }
    }
    emit(usize::MAX, None)
}

/// Object-safe JSON writing for the four record types.
trait ErasedSer {
    fn write_json(&self, buf: &mut Vec<u8>) -> Result<()>;
}

impl<T: Serialize> ErasedSer for T {
    fn write_json(&self, buf: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(buf, self).map_err(|e| Error::encode("a record", e))
    }
}

pub(crate) fn write_folder(h: &History, dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| Error::file("create folder", dir, e))?;
    for stream in Stream::ALL {
        let path = dir.join(stream.file_name());
        let file = File::create(&path).map_err(|e| Error::file("create", &path, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for_each_record(h, stream, |_, bytes| {
            w.write_all(bytes)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| Error::file("write", &path, e))
        })?;
        w.flush().map_err(|e| Error::file("write", &path, e))?;
    }
    let path = dir.join("truth.jsonl");
    let file = File::create(&path).map_err(|e| Error::file("create", &path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    for t in &h.truth {
        serde_json::to_writer(&mut w, t)
            .map_err(|e| Error::json_to_file("a truth line", &path, e))?;
        w.write_all(b"\n")
            .map_err(|e| Error::file("write", &path, e))?;
    }
    w.flush().map_err(|e| Error::file("write", &path, e))?;
    Ok(())
}
