#!/usr/bin/env bash
# Run the cargo-fuzz targets for a bounded time each (docs/reliability.md).
#
#     scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s; manifest package frame c_api)
#
# Needs the nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Builds the targets with `cargo +nightly fuzz build` (AddressSanitizer,
# coverage instrumentation, debug assertions), then runs each with libFuzzer for SECONDS over a
# working corpus in fuzz/target/corpus/<target>/, seeded from the committed fuzz/corpus/<target>/
# (the seeds stay small; what the fuzzer adds stays out of git and is kept for the next run;
# FUZZ_FRESH=1 starts from the seeds again). Prints executions, coverage and the result per target;
# full logs go to fuzz/target/logs/<target>.log.
#
# Exits 1 when a target finds a crash, a leak, a timeout or an out-of-memory input, and says where
# the input is and how to turn it into a regression test. Environment: FUZZ_TIMEOUT (seconds one
# input may take, default 60), FUZZ_RSS_MB (memory limit, default 4096), FUZZ_FRESH, FUZZ_NICE
# (niceness of the fuzzers, default 10: the machine stays usable).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz="$root/fuzz"
all_targets=(manifest package frame c_api)

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET (default 60)] [TARGET...] (targets: ${all_targets[*]})" >&2
    exit 2
fi
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    if ! [[ " ${all_targets[*]} " == *" $t "* ]]; then
        echo "scripts/fuzz.sh: unknown target '$t' (targets: ${all_targets[*]})" >&2
        exit 2
    fi
done

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "scripts/fuzz.sh: needs the nightly toolchain and cargo-fuzz:" >&2
    echo "    rustup toolchain install nightly && cargo install cargo-fuzz" >&2
    exit 2
fi

timeout_s="${FUZZ_TIMEOUT:-60}"
rss_mb="${FUZZ_RSS_MB:-4096}"
niceness="${FUZZ_NICE:-10}"

echo "== building ${targets[*]} (cargo +nightly fuzz build: AddressSanitizer, debug assertions)"
(cd "$fuzz" && for t in "${targets[@]}"; do cargo +nightly fuzz build "$t"; done)

triple="$(rustc +nightly -vV | sed -n 's/^host: //p')"
bin_dir="$fuzz/target/$triple/release"
work="$fuzz/target/corpus"
logs="$fuzz/target/logs"
artifacts="$fuzz/artifacts"
mkdir -p "$work" "$logs"

summary=()
failed=()
for t in "${targets[@]}"; do
    corpus="$work/$t"
    if [ "${FUZZ_FRESH:-0}" = 1 ]; then
        rm -rf "$corpus"
    fi
    mkdir -p "$corpus" "$artifacts/$t"
    # Seeds (and committed findings) into the working copy; what the fuzzer added before stays.
    cp -n "$fuzz/corpus/$t"/* "$corpus"/ 2>/dev/null || true
    before=$(find "$corpus" -type f | wc -l)
    # Artifacts of earlier runs are not this run's findings.
    stamp="$logs/.$t.start"
    : >"$stamp"
    log="$logs/$t.log"
    echo "== fuzzing $t for $seconds s ($before corpus inputs; log: ${log#"$root"/})"
    set +e
    (cd "$fuzz" && nice -n "$niceness" "$bin_dir/$t" \
        -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
        -print_final_stats=1 -artifact_prefix="$artifacts/$t/" "$corpus") >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "$corpus" -type f | wc -l)
    final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
    execs="$(final_stat number_of_executed_units)"
    per_sec="$(final_stat average_exec_per_sec)"
    peak="$(final_stat peak_rss_mb)"
    # The last status line: "#N  DONE  cov: C ft: F corp: U/S ..." (or pulse/NEW/REDUCE lines).
    last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")"
    found=$(find "$artifacts/$t" -type f -newer "$stamp" \( -name 'crash-*' -o -name 'leak-*' \
        -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
    if [ "$rc" -eq 0 ] && [ -z "$found" ]; then
        result="ok"
    else
        result="FAILED (exit $rc)"
        failed+=("$t")
    fi
    line=$(printf '%-9s %6s s  %10s execs  %8s/s  cov %6s  ft %6s  corpus %5s -> %-5s  peak RSS %5s MB  %s' \
        "$t" "$seconds" "${execs:-?}" "${per_sec:-?}" "${cov:-?}" "${ft:-?}" "$before" "$after" "${peak:-?}" "$result")
    echo "$line"
    summary+=("$line")
    if [ "$result" != ok ]; then
        echo "-- $t: the end of ${log#"$root"/}:"
        grep -E 'ERROR|panicked|SUMMARY|Test unit written|assert' "$log" | head -n 20 || true
        if [ -z "$found" ]; then
            echo "   (no input was saved: see the log)"
        fi
        for a in $found; do
            rel="${a#"$root"/}"
            cat <<EOF
   input: $rel
   reproduce:  (cd fuzz && cargo +nightly fuzz run $t ${a#"$fuzz"/})
   minimize:   (cd fuzz && cargo +nightly fuzz tmin $t ${a#"$fuzz"/})
   regression: fix the bug, then keep the input as a seed that cargo test replays:
               cp $rel fuzz/corpus/$t/finding-<what-it-is>
               cargo test --test fuzz_corpus        # tests/fuzz_corpus.rs replays fuzz/corpus/$t
EOF
        done
    fi
done

echo
echo "== summary ($seconds s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]}" >&2
    exit 1
fi
