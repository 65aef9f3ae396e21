#!/usr/bin/env bash
# Regenerates the input folders of the shipped rules' fixtures (rules/tests/*): for each
# rule, a small simulated district in which only that rule's pattern is injected (the
# same worlds as tests/e2e/rules.rs, smaller), gzipped. expected.jsonl is then written
# by `pantau rules test rules --update`; review its diff before committing. Each line of
# the test's output scores the fixture's alerts against its truth.jsonl: keep it at
# recall 1 and precision 1 (the seeds below are chosen so, on these small worlds).
set -euo pipefail
cd "$(dirname "$0")/.."
pantau=${PANTAU:-target/release/pantau}
quiet=(--seed 2024 --malformed 0 --seasonal-rate 0 --supplier-rings 0
  --card-collection-rate 0 --price-markup-rate 0 --short-quantity-rate 0
  --paperwork-rate 0 --non-transacting-outlets 0 --many-places-rate 0
  --realization-lag-rate 0 --kecamatan-premium-rate 0 --fixed-amount-rate 0
  --over-norm-rate 0)

# fixture FOLDER RULE DESCRIPTION SIMULATE-FLAGS...: a near-miss lives in a folder of
# its own beside its rule's fixture, and its expected.jsonl is empty.
fixture_in() {
  local dir=rules/tests/$1 rule=$2 description=$3
  shift 3
  rm -rf "$dir"
  # Each fixture turns its own pattern back on: drop that flag from the quiet set.
  local base=() i
  for ((i = 0; i < ${#quiet[@]}; i += 2)); do
    [[ " $* " == *" ${quiet[i]} "* ]] || base+=("${quiet[i]}" "${quiet[i + 1]}")
  done
  "$pantau" simulate "${base[@]}" "$@" --out "$dir" >/dev/null
  gzip -9n "$dir"/*.jsonl
  gunzip "$dir/truth.jsonl.gz"
  printf '{"rules": ["%s"], "description": "%s"}\n' "$rule" "$description" >"$dir/fixture.json"
}

# fixture RULE DESCRIPTION SIMULATE-FLAGS...: the rule's own fixture, named after it.
fixture() {
  fixture_in "$1" "$@"
}

one_month=(--regencies 3604 --scale 0.2 --months 1)
fixture card_collection_burst "Collected cards swiped in bulk at one terminal" \
  "${one_month[@]}" --card-collection-rate 3.0
fixture_in card_collection_burst_queues card_collection_burst \
  "Near-miss: credit-day queues at every outlet, KPM served by hand with their own cards" \
  "${one_month[@]}" --queue-rate 1.0
fixture area_price_level "A whole kecamatan dearer than its regency, its outlets in line with it" \
  --regencies 3604 --scale 0.5 --months 1 --kecamatan-premium-rate 0.5 --seed 1
fixture rice_above_het "Rice sold to KPM above the premium ceiling of the zone" \
  "${one_month[@]}" --price-markup-rate 3.0 --markup-factor-min 1.3 --markup-factor-max 1.5
fixture fixed_amount "Every KPM charged the whole benefit as one package" \
  "${one_month[@]}" --fixed-amount-rate 2.0
fixture kpm_over_norm "An outlet serving more KPM than the norm of 300" \
  --regencies 3604 --scale 0.2 --months 2 --over-norm-rate 0.3
fixture price_markup "A commodity sold well above the district median" \
  "${one_month[@]}" --price-markup-rate 2.0 --seed 1
fixture short_quantity "A rigged scale: less food per rupiah" \
  "${one_month[@]}" --short-quantity-rate 2.0
fixture paperwork_mismatch "Receipts that do not add up" \
  "${one_month[@]}" --paperwork-rate 2.0 --seed 1
fixture card_many_places "One card swiped at several outlets within hours" \
  "${one_month[@]}" --many-places-rate 2.0
fixture seasonal_outlet "Outlets open only in the days after credit" \
  --regencies 3604 --scale 0.2 --months 3 --seasonal-rate 0.1
fixture supplier_dependent "A ring of outlets passing their takings to one supplier" \
  --regencies 3604 --scale 0.3 --months 2 --supplier-rings 1
fixture non_transacting "Outlets whose KPM did not spend their benefit" \
  --regencies 3604 --scale 0.2 --months 3 --non-transacting-outlets 2.0
fixture realization_lag "A regency whose spending lags its peers" \
  --regencies 3601,3602,3604 --scale 0.1 --months 3 --realization-lag-rate 0.3 --seed 3

"$pantau" rules test rules --update
