#!/usr/bin/env bash
# Recall and precision of the shipped rules as a function of anomaly intensity.
#
# For every pattern the simulator can inject, one intensity flag is swept over a list
# of values; each value is simulated with several seeds in the default world
# (3 regencies, 3 months), replayed through the rules and scored with `pantau eval`.
# The pattern's rate is raised so that recall is measured on tens of cases, not two.
# The result is a markdown table per pattern, printed and written to --out.
#
# Usage: scripts/sweep.sh [--pantau BIN] [--rules DIR] [--work DIR] [--out FILE]
#                         [--seeds "1 2 3"] [--only SECTION[,SECTION...]]
#                         [--values "V1 V2 ..."] [--keep] [--list]
#
# Runs are sequential. The script is safe to run beside another sweep: it copies the
# binary and the rules into its work dir before the first run (so a rebuild of target/
# or an edit of rules/ mid-sweep does not mix versions), a work dir is locked while in
# use, and the report is written atomically. A run whose result is already in the
# work dir (same flags, same binary, same rules) is not run again, so an interrupted
# sweep resumes where it stopped when given the same --work.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/sweep.sh [options]

  --pantau BIN      pantau binary (default: target/release/pantau); copied before use
  --rules DIR       rules folder (default: rules/); copied before use
  --work DIR        work dir (default: a new mktemp dir under ${TMPDIR:-/tmp});
                    holds the copies, one folder per run and the logs; re-using it
                    resumes an interrupted sweep
  --out FILE        also write the markdown report to FILE (default: WORK/sweep.md)
  --seeds "S..."    seeds of each setting (default: "1 2 3")
  --only S[,S...]   sweep only these sections (see --list)
  --values "V..."   override the values of the (single) section given with --only
  --keep            keep each simulated history (about 60 MB a run); by default only
                    truth.jsonl, alerts.jsonl and the eval figures are kept
  --list            list the sections and exit
  -h, --help        this help
EOF
}

die() { echo "sweep: $*" >&2; exit 1; }
CURRENT_STEP="'setup'"
trap 'rc=$?; echo "sweep: step ${CURRENT_STEP} failed (exit $rc, line $LINENO of $0)" >&2; exit $rc' ERR

# ---------------------------------------------------------------- sections
# id | category scored | title | label of the value column | flags ({v} = the value) |
# values | fixed flags raising the pattern's rate
SECTIONS=(
"collection_cards|card_collection|Card collection: cards per burst|cards per burst|--collection-cards-min {v} --collection-cards-max {v}|6 8 10 12 15 20|--card-collection-rate 4"
"collection_spacing|card_collection|Card collection: spacing between swipes|mean spacing (s)|--collection-spacing-min-secs {v} --collection-spacing-max-secs {v}|30 60 120 180 300|--card-collection-rate 4"
"markup_factor|price_markup|Price markup: markup factor|markup factor|--markup-factor-min {v} --markup-factor-max {v}|1.1 1.15 1.2 1.25 1.3 1.5|--price-markup-rate 3"
"short_factor|short_quantity|Short quantity: share of the weight handed out|weight handed out|--short-factor-min {v} --short-factor-max {v}|0.95 0.9 0.85 0.8 0.7|--short-quantity-rate 2"
"seasonal_leak|seasonal_outlet|Seasonal outlet: sales leaked outside the windows|leak|--seasonal-leak {v}|0 0.1 0.2 0.3 0.5|--seasonal-rate 0.1"
"many_places_outlets|card_many_places|Card used in many places: outlets per card|outlets per card|--many-places-outlets-min {v} --many-places-outlets-max {v}|2 3 4|--many-places-rate 3"
"non_transacting_share|non_transacting|Non-transacting outlet: share of KPM not spending|share not spending|--non-transacting-share-min {v} --non-transacting-share-max {v}|0.1 0.2 0.3 0.4 0.5|--non-transacting-outlets 3"
"realization_lag_share|realization_lag|Realization lag: share of spenders delayed|share delayed|--realization-lag-share-min {v} --realization-lag-share-max {v}|0.05 0.1 0.2 0.3 0.4|--realization-lag-rate 0.5"
"queue_size|card_collection|Credit-day queues beside collected cards: KPM per queue|KPM per queue|--queue-size-min {v} --queue-size-max {v}|10 20 30 40|--card-collection-rate 4 --queue-rate 0.5"
"kecamatan_premium|area_price_level|Interior kecamatan: price premium over the regency|premium|--kecamatan-premium-min {v} --kecamatan-premium-max {v}|1.03 1.05 1.08 1.12 1.2 1.3|--kecamatan-premium-rate 0.4 --short-quantity-rate 2 --price-markup-rate 2"
"supplier_share|supplier_dependent|Supplier ring: share of takings paid to the supplier|share to supplier|--supplier-share-min {v} --supplier-share-max {v}|0.3 0.5 0.7 0.9|--supplier-rings 3"
)

# ---------------------------------------------------------------- options
PANTAU=target/release/pantau
RULES=rules
WORK=
OUT=
SEEDS="1 2 3"
ONLY=
VALUES=
KEEP=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --pantau) PANTAU=${2:?--pantau needs a value}; shift 2 ;;
        --rules) RULES=${2:?--rules needs a value}; shift 2 ;;
        --work) WORK=${2:?--work needs a value}; shift 2 ;;
        --out) OUT=${2:?--out needs a value}; shift 2 ;;
        --seeds) SEEDS=${2:?--seeds needs a value}; shift 2 ;;
        --only) ONLY=${2:?--only needs a value}; shift 2 ;;
        --values) VALUES=${2:?--values needs a value}; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --list)
            for s in "${SECTIONS[@]}"; do
                IFS='|' read -r id cat title _ flags values fixed <<<"$s"
                printf '%-22s %-19s %s  [%s]  %s\n' "$id" "$cat" "$flags" "$values" "$fixed"
            done
            exit 0 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ -x $PANTAU ]] || die "step 'check inputs' failed: no executable pantau binary at $PANTAU (build it, or pass --pantau)"
[[ -d $RULES ]] || die "step 'check inputs' failed: no rules folder at $RULES (pass --rules)"
compgen -G "$RULES/*.sql" >/dev/null || die "step 'check inputs' failed: $RULES holds no *.sql rule"
command -v python3 >/dev/null || die "step 'check inputs' failed: python3 is needed for the figures"
[[ -n $SEEDS ]] || die "step 'check inputs' failed: --seeds is empty"
for s in $SEEDS; do [[ $s =~ ^[0-9]+$ ]] || die "step 'check inputs' failed: seed '$s' is not a number"; done

# Selected sections.
SELECTED=()
for s in "${SECTIONS[@]}"; do
    id=${s%%|*}
    if [[ -z $ONLY || ",$ONLY," == *",$id,"* ]]; then SELECTED+=("$s"); fi
done
if [[ -n $ONLY ]]; then
    for want in ${ONLY//,/ }; do
        found=0
        for s in "${SELECTED[@]}"; do [[ ${s%%|*} == "$want" ]] && found=1; done
        [[ $found == 1 ]] || die "step 'check inputs' failed: unknown section '$want' (see --list)"
    done
fi
if [[ -n $VALUES ]]; then
    [[ ${#SELECTED[@]} == 1 ]] || die "step 'check inputs' failed: --values needs exactly one section in --only"
    IFS='|' read -r id cat title label flags _ fixed <<<"${SELECTED[0]}"
    SELECTED=("$id|$cat|$title|$label|$flags|$VALUES|$fixed")
fi

# ---------------------------------------------------------------- work dir
if [[ -z $WORK ]]; then
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/pantau-sweep.XXXXXX") \
        || die "step 'create work dir' failed"
fi
mkdir -p "$WORK" || die "step 'create work dir' failed: cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
[[ -n $OUT ]] || OUT=$WORK/sweep.md

# One sweep per work dir at a time.
exec 9>"$WORK/.lock" || die "step 'lock work dir' failed: cannot write $WORK/.lock"
flock -n 9 || die "step 'lock work dir' failed: another sweep is using $WORK"

# Snapshot the binary and the rules, so that a rebuild or an edit during the sweep
# does not change what is measured.
mkdir -p "$WORK/bin" || die "step 'copy pantau binary' failed"
cp "$PANTAU" "$WORK/bin/pantau.new" && mv -f "$WORK/bin/pantau.new" "$WORK/bin/pantau" \
    || die "step 'copy pantau binary' failed: cp $PANTAU $WORK/bin/pantau"
rm -rf "$WORK/rules.new"
cp -r "$RULES" "$WORK/rules.new" && rm -rf "$WORK/rules" && mv "$WORK/rules.new" "$WORK/rules" \
    || die "step 'copy rules' failed: cp -r $RULES $WORK/rules"
BIN=$WORK/bin/pantau
RULES_COPY=$WORK/rules
"$BIN" simulate --help >/dev/null 2>&1 || die "step 'check pantau binary' failed: $BIN simulate --help does not run"
BIN_SHA=$(sha256sum "$BIN" | cut -c1-12)
RULES_SHA=$( (cd "$RULES_COPY" && find . -type f -name '*.sql' | LC_ALL=C sort | xargs sha256sum) | sha256sum | cut -c1-12)

# Check every flag of the selected sections against the binary's help, so that a
# renamed flag fails here rather than after ten minutes.
HELP=$("$BIN" simulate --help)
for s in "${SELECTED[@]}"; do
    IFS='|' read -r id _ _ _ flags _ fixed <<<"$s"
    for f in $flags $fixed; do
        [[ $f == --* ]] || continue
        grep -q -- "$f " <<<"$HELP" || die "step 'check flags' failed: section $id uses $f, which '$BIN simulate' does not know"
    done
done

# ---------------------------------------------------------------- per-run analysis
# Reads one run's eval JSON (with --show-misses), truth.jsonl, alerts.jsonl and, for
# rings, transfers.jsonl; writes summary.json: the eval figures plus where the false
# alerts sit (on another pattern's case, or on nothing injected) and which other
# rules fired on each category's cases.
cat >"$WORK/analyze.py" <<'PY'
import json, os, re, sys
from datetime import datetime

run = sys.argv[1]
ev = json.load(open(f"{run}/eval.json"))

def ts(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

truths = [json.loads(l) for l in open(f"{run}/truth.jsonl") if l.strip()]
# The outlets of each injected ring: those paying its supplier. Cached beside the run,
# as transfers.jsonl is deleted once the run is analysed (unless --keep).
suppliers = {t["entity_id"] for t in truths if t["entity_type"] == "ring"}
ring_outlets = {s: set() for s in suppliers}
if suppliers:
    if os.path.exists(f"{run}/transfers.jsonl"):
        with open(f"{run}/transfers.jsonl") as f:
            for l in f:
                try:
                    r = json.loads(l)
                except ValueError:
                    continue
                cp = r.get("counterparty_id")
                if cp in ring_outlets and r.get("outlet_id"):
                    ring_outlets[cp].add(r["outlet_id"])
        json.dump({k: sorted(v) for k, v in ring_outlets.items()},
                  open(f"{run}/ring_outlets.json", "w"))
    else:
        ring_outlets = {k: set(v) for k, v in json.load(open(f"{run}/ring_outlets.json")).items()}

def truth_keys(t):
    e, p = t["entity_id"], t.get("params") or {}
    if t["entity_type"] == "terminal":
        return {e, p.get("outlet_id")} - {None}
    if t["entity_type"] == "ring":
        return {e} | ring_outlets.get(e, set())
    return {e}

def alert_keys(a):
    e, ev_ = a["entity_id"], a.get("evidence") or {}
    if a["entity_type"] == "terminal":
        m = re.match(r"TRM-(\d{4}-\d{4})", e)
        return {e, ev_.get("outlet_id") or (m and "EW-" + m.group(1))} - {None}
    if a["entity_type"] == "ring":
        outs = ev_.get("outlets") or ev_.get("outlet_ids") or []
        if isinstance(outs, str):
            outs = outs.split(",")
        return {e} | {o for o in outs if o}
    return {e}

T = [(t["category"], truth_keys(t), ts(t["start"]), ts(t["end"])) for t in truths
     if t["category"] != "malformed"]
alerts = {}
with open(f"{run}/alerts.jsonl") as f:
    for l in f:
        if l.strip():
            a = json.loads(l)
            alerts.setdefault((a["category"], a["entity_type"], a["entity_id"],
                               ts(a["window_start"]), ts(a["window_end"])), a)

def on_truths(keys, lo, hi):
    """Categories of the truths sharing an entity with keys and overlapping [lo, hi)."""
    return sorted({c for c, k, s, e in T if k & keys and s < hi and lo <= e})

# False alerts: which injected pattern (if any) they sit on.
false_on = {}        # alert category -> {truth category or "nothing injected": n}
wrong_rule_on = {}   # truth category -> {alert category: n}  (other rules firing on its cases)
for fa in ev.get("false_alerts", []):
    lo, hi = ts(fa["window_start"]), ts(fa["window_end"])
    a = alerts.get((fa["category"], fa["entity_type"], fa["entity_id"], lo, hi), fa)
    cats = on_truths(alert_keys(a), lo, hi)
    d = false_on.setdefault(fa["category"], {})
    if not cats:
        d["nothing injected"] = d.get("nothing injected", 0) + 1
    for c in cats:
        label = c if c != fa["category"] else "same pattern, another case"
        d[label] = d.get(label, 0) + 1
        if c != fa["category"]:
            w = wrong_rule_on.setdefault(c, {})
            w[fa["category"]] = w.get(fa["category"], 0) + 1

json.dump({"categories": {c["category"]: c for c in ev["categories"]},
           "false_on": false_on, "wrong_rule_on": wrong_rule_on,
           "missed": len(ev.get("missed", []))},
          open(f"{run}/summary.json", "w"), indent=1)
PY

# ---------------------------------------------------------------- report
cat >"$WORK/report.py" <<'PY'
import json, statistics, sys
manifest, meta = sys.argv[1], json.loads(sys.argv[2])
rows = [l.rstrip("\n").split("\t") for l in open(manifest) if l.strip()]
# section id, category, title, label, flags, fixed, value, seed, run dir
sections = {}
for sid, cat, title, label, flags, fixed, value, seed, run in rows:
    s = sections.setdefault(sid, {"cat": cat, "title": title, "label": label,
                                  "flags": flags, "fixed": fixed, "values": {}})
    s["values"].setdefault(value, []).append((seed, json.load(open(f"{run}/summary.json"))))

def fmt(x, d=2):
    return "–" if x is None else f"{x:.{d}f}"

def counts(d):
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items(), key=lambda kv: -kv[1]))

out = []
out.append("# Detection as a function of anomaly intensity\n")
out.append(f"Made by `scripts/sweep.sh`: pantau `{meta['bin_sha']}`, rules `{meta['rules_sha']}`, "
           f"seeds {meta['seeds']}, default world otherwise (3 regencies, 3 months, scale 1). "
           "Each row sums its seeds: *cases* are the truth lines of the pattern, *found* those "
           "an alert of the right category matched (same entity, overlapping time), *precision* "
           "is true alerts / alerts of that category. *Median delay* is the median over the "
           "seeds of each run's median detection delay. *Other rules on these cases* counts "
           "alerts of another category that sit on an injected case of this pattern (same "
           "outlet, terminal, card, regency or ring, overlapping time); *false alerts sit on* "
           "says where this category's unmatched alerts fall.\n")
for sid, s in sections.items():
    cat = s["cat"]
    out.append(f"## {s['title']}\n")
    out.append(f"Category `{cat}`; swept `{s['flags'].replace('{v}', 'V')}`; fixed `{s['fixed']}`.\n")
    out.append(f"| {s['label']} | cases | found | recall | alerts | true alerts | precision "
               "| median delay h | other rules on these cases | false alerts sit on |")
    out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for value, runs in s["values"].items():
        tr = de = al = ta = 0
        delays, wrong, falses = [], {}, {}
        for seed, r in runs:
            c = r["categories"].get(cat, {})
            tr += c.get("truths", 0); de += c.get("detected", 0)
            al += c.get("alerts", 0); ta += c.get("true_alerts", 0)
            if c.get("median_delay_hours") is not None and c.get("detected", 0) > 0:
                delays.append(c["median_delay_hours"])
            for k, v in r["wrong_rule_on"].get(cat, {}).items():
                wrong[k] = wrong.get(k, 0) + v
            for k, v in r["false_on"].get(cat, {}).items():
                falses[k] = falses.get(k, 0) + v
        recall = de / tr if tr else None
        precision = ta / al if al else None
        delay = statistics.median(delays) if delays else None
        out.append(f"| {value} | {tr} | {de} | {fmt(recall)} | {al} | {ta} | {fmt(precision)} "
                   f"| {fmt(delay, 1)} | {counts(wrong) or '–'} | {counts(falses) or '–'} |")
    out.append("")
print("\n".join(out))
PY

# ---------------------------------------------------------------- runs
MANIFEST=$WORK/manifest.tsv
: >"$MANIFEST"
CURRENT_STEP="'start runs'"

# step NAME LOGFILE CMD...: runs CMD with its output in LOGFILE; on failure names the
# step, shows the end of the log and stops.
step() {
    local name=$1 log=$2; shift 2
    CURRENT_STEP="'$name'"
    local rc=0
    "$@" >"$log" 2>&1 || rc=$?
    if [[ $rc != 0 ]]; then
        echo "sweep: step '$name' failed (exit $rc): $*" >&2
        echo "sweep: last lines of $log:" >&2
        tail -n 15 "$log" | sed 's/^/    /' >&2
        exit 1
    fi
}

total=0
for s in "${SELECTED[@]}"; do
    IFS='|' read -r _ _ _ _ _ values _ <<<"$s"
    for _v in $values; do for _s in $SEEDS; do total=$((total + 1)); done; done
done

START=$(date +%s)
n=0
fresh=0
for s in "${SELECTED[@]}"; do
    IFS='|' read -r id cat title label flags values fixed <<<"$s"
    for v in $values; do
        [[ $v =~ ^[0-9.]+$ ]] || die "step 'check inputs' failed: value '$v' of $id is not a number"
        # shellcheck disable=SC2206
        vflags=(${flags//\{v\}/$v})
        # shellcheck disable=SC2206
        fflags=($fixed)
        # The burst jitter (3 s by default) must stay below the shortest spacing.
        if [[ $id == collection_spacing ]] && python3 -c "import sys; sys.exit(float('$v') > 3)"; then
            fflags+=(--collection-jitter-secs "$(python3 -c "print(max(0, int(float('$v')) - 1))")")
        fi
        for seed in $SEEDS; do
            n=$((n + 1))
            run=$WORK/runs/$id/$v/seed-$seed
            args=(--seed "$seed" "${vflags[@]}" "${fflags[@]}")
            stamp="$BIN_SHA $RULES_SHA ${args[*]}"
            if [[ -f $run/summary.json && -f $run/stamp && $(cat "$run/stamp") == "$stamp" ]]; then
                # Done before: only the (cheap) analysis is redone.
                step "analyze $id=$v seed $seed" "$run/analyze.log" \
                    python3 "$WORK/analyze.py" "$run"
                printf '[%d/%d] %s=%s seed %s: done before, kept\n' "$n" "$total" "$id" "$v" "$seed" >&2
            else
                t0=$(date +%s)
                fresh=$((fresh + 1))
                rm -rf "$run"; mkdir -p "$run"
                step "simulate $id=$v seed $seed" "$run/simulate.log" \
                    "$BIN" simulate --out "$run" "${args[@]}"
                step "replay $id=$v seed $seed" "$run/replay.log" \
                    "$BIN" replay "$run" --out "$run/alerts.jsonl" --rules "$RULES_COPY"
                # replay logs a failing rule and goes on; a rule that fails would read as
                # zero recall, so an ERROR in the log stops the sweep. (Not grep -q: it
                # would stop reading, and under pipefail sed's SIGPIPE hides the match.)
                if sed 's/\x1b\[[0-9;]*m//g' "$run/replay.log" | grep ' ERROR ' >/dev/null; then
                    echo "sweep: step 'replay $id=$v seed $seed' logged errors (a rule failed?); first ones:" >&2
                    sed 's/\x1b\[[0-9;]*m//g' "$run/replay.log" | grep ' ERROR ' | head -n 3 | cut -c1-400 | sed 's/^/    /' >&2 || true
                    die "step 'replay $id=$v seed $seed' failed: see $run/replay.log"
                fi
                step "eval $id=$v seed $seed" "$run/eval.log" \
                    "$BIN" eval "$run" --alerts "$run/alerts.jsonl" --json "$run/eval.json" --show-misses
                step "analyze $id=$v seed $seed" "$run/analyze.log" \
                    python3 "$WORK/analyze.py" "$run"
                if [[ $KEEP == 0 ]]; then
                    rm -f "$run/transactions.jsonl" "$run/disbursements.jsonl" "$run/transfers.jsonl"
                fi
                echo "$stamp" >"$run/stamp"
                CURRENT_STEP="'progress line $id=$v seed $seed'"
                read -r rec fnd <<<"$(python3 -c "
import json; c = json.load(open('$run/summary.json'))['categories'].get('$cat', {})
print(c.get('truths', 0), c.get('detected', 0))")"
                printf '[%d/%d] %s=%s seed %s: %s %s/%s found (%ss)\n' \
                    "$n" "$total" "$id" "$v" "$seed" "$cat" "$fnd" "$rec" "$(( $(date +%s) - t0 ))" >&2
            fi
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
                "$id" "$cat" "$title" "$label" "$flags" "${fflags[*]}" "$v" "$seed" "$run" >>"$MANIFEST"
        done
    done
done
ELAPSED=$(( $(date +%s) - START ))

meta=$(printf '{"bin_sha":"%s","rules_sha":"%s","seeds":"%s"}' "$BIN_SHA" "$RULES_SHA" "${SEEDS// /, }")
CURRENT_STEP="'report'"
report=$(python3 "$WORK/report.py" "$MANIFEST" "$meta") || die "step 'report' failed: python3 $WORK/report.py $MANIFEST"
report+=$'\n'"Sweep of $n runs ($fresh run now, $((n - fresh)) reused from an earlier invocation) took ${ELAPSED} s ($(( ELAPSED / 60 )) min $(( ELAPSED % 60 )) s) on $(nproc) cores."
mkdir -p "$(dirname "$OUT")" || die "step 'write report' failed: cannot create $(dirname "$OUT")"
printf '%s\n' "$report" >"$OUT.tmp.$$" && mv -f "$OUT.tmp.$$" "$OUT" || die "step 'write report' failed: cannot write $OUT"
printf '%s\n' "$report"
echo "sweep: report in $OUT, runs in $WORK" >&2
