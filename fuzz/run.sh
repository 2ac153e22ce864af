#!/usr/bin/env bash
# Build the fuzz targets with sanitizer coverage on stable Rust and run each under libFuzzer for a
# time budget, after replaying its regression inputs. See fuzz/README.md.
#
#   bash fuzz/run.sh [--budget SECONDS] [--jobs N] [--targets a,b,...] [--with-sidecar] [--merge]
#
# Exit status: 0 when every target ran clean, 1 when a target crashed, timed out or ran out of
# memory (the artifact and the command that reproduces it are printed), 2 on a usage or build
# error. Each target also prints one machine-readable line:
#   RESULT target=NAME status=ok|crash|no-run execs=N exec_per_sec=N cov=N ft=N corpus=N new=N
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$fuzz_dir")"

default_targets=(token_verify nats_authz_request mqtt_topic nats_subject policy_input)
sidecar_target=sidecar_bodies

budget=60
jobs=1
targets=()
with_sidecar=0
merge=0

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    echo
    echo "targets: ${default_targets[*]} (and $sidecar_target with --with-sidecar)"
    echo "env: FUZZ_TARGET_DIR (default <repo>/target/fuzz), CARGO_BUILD_JOBS, CXX"
}

die() {
    echo "fuzz/run.sh: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --budget) budget="${2:?--budget needs SECONDS}"; shift 2 ;;
        --budget=*) budget="${1#*=}"; shift ;;
        --jobs) jobs="${2:?--jobs needs N}"; shift 2 ;;
        --jobs=*) jobs="${1#*=}"; shift ;;
        --targets) IFS=, read -r -a targets <<<"${2:?--targets needs a,b,...}"; shift 2 ;;
        --targets=*) IFS=, read -r -a targets <<<"${1#*=}"; shift ;;
        --with-sidecar) with_sidecar=1; shift ;;
        --merge) merge=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[[ "$budget" =~ ^[1-9][0-9]*$ ]] || die "--budget must be a positive number of seconds, not '$budget'"
[[ "$jobs" =~ ^[1-9][0-9]*$ ]] || die "--jobs must be a positive number, not '$jobs'"

if [ ${#targets[@]} -eq 0 ]; then
    targets=("${default_targets[@]}")
    [ "$with_sidecar" = 1 ] && targets+=("$sidecar_target")
fi
for t in "${targets[@]}"; do
    case " ${default_targets[*]} $sidecar_target " in
        *" $t "*) ;;
        *) die "unknown target '$t' (known: ${default_targets[*]} $sidecar_target)" ;;
    esac
    # Naming the sidecar target is asking for it.
    [ "$t" = "$sidecar_target" ] && with_sidecar=1
done

# libfuzzer-sys compiles libFuzzer itself (C++) through the cc crate.
cxx="${CXX:-c++}"
if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "fuzz/run.sh: no C++ compiler ('$cxx' is not on PATH): libfuzzer-sys builds libFuzzer from" >&2
    echo "its C++ source. Install one with: apt-get install -y g++" >&2
    exit 2
fi
command -v cargo >/dev/null 2>&1 || die "cargo is not on PATH"

target_dir="${FUZZ_TARGET_DIR:-$repo/target/fuzz}"
host="$(rustc -vV | sed -n 's/^host: //p')"
[ -n "$host" ] || die "could not read the host triple from 'rustc -vV'"
bin_dir="$target_dir/$host/release"
art_root="$target_dir/artifacts"
work_root="$target_dir/run"

# Sanitizer coverage the way cargo-fuzz asks for it, minus its nightly-only flags (no
# -Zsanitizer): 8-bit counters, PC table and comparison tracing for libFuzzer, `cfg(fuzzing)`,
# debug assertions and overflow checks on in release.
rustflags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    --cfg fuzzing
    -Cdebug-assertions
    -Coverflow-checks
)

features=()
[ "$with_sidecar" = 1 ] && features=(--features sidecar)
bin_args=()
for t in "${targets[@]}"; do bin_args+=(--bin "$t"); done

echo "== building ${targets[*]} into $bin_dir"
build_start=$(date +%s)
# --target keeps RUSTFLAGS off build scripts and proc macros (they link no libFuzzer). Flags
# from the caller's environment would replace ours: clear them.
if ! env -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u CARGO_TARGET_DIR \
    RUSTFLAGS="${rustflags[*]}" \
    cargo build --manifest-path "$fuzz_dir/Cargo.toml" --release --target "$host" \
    --target-dir "$target_dir" "${features[@]}" "${bin_args[@]}"; then
    die "the fuzz targets did not build"
fi
echo "== built in $(($(date +%s) - build_start)) s"

mkdir -p "$art_root" "$work_root"
results="$(mktemp -d)"
trap 'rm -rf "$results"' EXIT

# The lines of a libFuzzer log that say what failed: those matching $1, and the line after each
# panic (its message), at most $3 of them, indented.
excerpt() {
    awk -v re="$1" 'after { print; after = 0 } $0 ~ re { print; if ($0 ~ /panicked at/) after = 1 }' "$2" \
        | cut -c1-400 | head -n "$3" | sed 's/^/    /'
}

# One target: replay its regressions, fuzz it for the budget from a scratch copy of its corpus,
# optionally merge new coverage back. Writes its report to $results/NAME.
run_target() {
    local t="$1"
    local bin="$bin_dir/$t" corpus="$fuzz_dir/corpus/$t" regressions="$fuzz_dir/regressions/$t"
    local art="$art_root/$t" work="$work_root/$t"
    local log="$work/fuzz.log" report="$results/$t"
    rm -rf "$work" "$art"
    mkdir -p "$work/corpus" "$art"
    local common=(-rss_limit_mb=2048 -timeout=10 "-artifact_prefix=$art/")
    {
        local status=ok
        if [ ! -x "$bin" ]; then
            echo "RESULT target=$t status=no-run execs=0 exec_per_sec=0 cov=0 ft=0 corpus=0 new=0"
            echo "FAIL $t: $bin was not built"
            return
        fi
        # Every input under regressions/ is run once (libFuzzer runs files given as arguments).
        local reg=()
        if [ -d "$regressions" ]; then
            while IFS= read -r -d '' f; do reg+=("$f"); done \
                < <(find "$regressions" -type f ! -name '*.md' -print0 | sort -z)
        fi
        if [ ${#reg[@]} -gt 0 ]; then
            if "$bin" "${common[@]}" "${reg[@]}" >"$work/regressions.log" 2>&1; then
                echo "  $t: ${#reg[@]} regression input(s) pass"
            else
                status=crash
                echo "FAIL $t: a regression input fails again (log: $work/regressions.log)"
                excerpt '^Running: |panicked at|^(SUMMARY|==[0-9]+== ERROR)' "$work/regressions.log" 20
            fi
        fi
        if [ -d "$corpus" ]; then cp -R "$corpus/." "$work/corpus/"; fi
        local seeds
        seeds=$(find "$work/corpus" -type f | wc -l)
        local rc=0
        "$bin" "${common[@]}" -max_total_time="$budget" -print_final_stats=1 \
            "$work/corpus" >"$log" 2>&1 || rc=$?
        local execs rate line cov ft
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
        line=$(grep -E '^#[0-9]+.* cov: ' "$log" | tail -n 1 || true)
        cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$line")
        ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$line")
        local artifacts=()
        while IFS= read -r -d '' f; do artifacts+=("$f"); done \
            < <(find "$art" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \
                -o -name 'leak-*' \) -print0)
        if [ "$rc" -ne 0 ] || [ ${#artifacts[@]} -gt 0 ]; then
            status=crash
            echo "FAIL $t: libFuzzer exited $rc (log: $log)"
            excerpt 'panicked at|^(SUMMARY|==[0-9]+== ERROR)' "$log" 12
            for a in "${artifacts[@]}"; do
                echo "  artifact: $a"
                echo "  reproduce: RUST_BACKTRACE=1 $bin $a"
                echo "  keep it as a regression: cp $a $regressions/"
            done
        fi
        local after
        after=$(find "$work/corpus" -type f | wc -l)
        if [ "$merge" = 1 ] && [ "$status" = ok ]; then
            mkdir -p "$corpus"
            "$bin" "${common[@]}" -merge=1 "$corpus" "$work/corpus" >"$work/merge.log" 2>&1 \
                || echo "  $t: merge failed (log: $work/merge.log)"
            echo "  $t: merged into fuzz/corpus/$t: $(find "$corpus" -type f | wc -l) inputs"
        fi
        printf '  %-20s %10s execs %8s exec/s   cov: %-6s ft: %-6s corpus %s -> %s\n' \
            "$t" "${execs:-0}" "${rate:-0}" "${cov:-0}" "${ft:-0}" "$seeds" "$after"
        echo "RESULT target=$t status=$status execs=${execs:-0} exec_per_sec=${rate:-0}" \
            "cov=${cov:-0} ft=${ft:-0} corpus=$seeds new=$((after - seeds))"
    } >"$report" 2>&1
}

echo "== fuzzing ${#targets[@]} target(s), $budget s each, $jobs at a time"
run_start=$(date +%s)
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "   start $t"
    run_target "$t" &
    running=$((running + 1))
done
wait

failed=0
for t in "${targets[@]}"; do
    cat "$results/$t"
    grep -q "^RESULT target=$t status=ok " "$results/$t" || failed=1
done
echo "== fuzzed in $(($(date +%s) - run_start)) s"
if [ "$failed" = 1 ]; then
    echo "fuzz/run.sh: a target failed (see FAIL above)" >&2
    exit 1
fi
echo "fuzz/run.sh: all targets ran clean"
