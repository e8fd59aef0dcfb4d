#!/usr/bin/env bash
# Run the README's test command N times in a row on a clean clone, after one
# setup, the way CI does (CI=true, ../shared beside the clone), and print one
# summary line per run and a total. Exit status 0 only if every run passed.
#
#   ./scripts/ci-repeat.sh 5                      # the whole suite, 5 times
#   ./scripts/ci-repeat.sh 1 -run 'TestScripts/doctor$' -- ./cmd/pyro
#                                                 # a subset: go test flags, then
#                                                 # packages after --, no Python
#
# The clone is of the committed HEAD of this checkout; logs stay in the
# printed directory. The environment cache is the shared one (setup fills it).
set -euo pipefail
n="${1:?usage: ci-repeat.sh N [GO_TEST_FLAGS... [-- PACKAGES...]]}"
shift
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/pyro-ci-XXXXXX)"

flags=() pkgs=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; pkgs=("$@"); break; fi
  flags+=("$1"); shift
done

git clone -q "$src" "$work/pyro"
# CI runs with ../shared beside the clone (reference material the tests read;
# under CI=true a test that misses it fails). $PYRO_SHARED_DIR overrides.
shared="${PYRO_SHARED_DIR:-$src/../shared}"
if [ -d "$shared" ]; then
  ln -s "$(cd "$shared" && pwd)" "$work/shared"
else
  echo "ci-repeat: warning: no $shared: tests that read ../shared will fail under CI=true" >&2
fi
cd "$work/pyro"
export CI=true CGO_ENABLED=0

echo "ci-repeat: clone of $(git rev-parse --short HEAD) in $work; setup..." >&2
start=$(date +%s)
if ! ./scripts/setup.sh >"$work/setup.log" 2>&1; then
  echo "ci-repeat: setup FAILED after $(( $(date +%s) - start ))s; see $work/setup.log"
  exit 1
fi
echo "ci-repeat: setup ok in $(( $(date +%s) - start ))s" >&2

run_tests() {
  if [ ${#pkgs[@]} -eq 0 ]; then
    ./scripts/test.sh "${flags[@]}"
  else
    go vet "${pkgs[@]}" && go test -count=1 -timeout 40m "${flags[@]}" "${pkgs[@]}"
  fi
}

passed=0
for i in $(seq 1 "$n"); do
  log="$work/run-$i.log"
  start=$(date +%s)
  load="$(cut -d' ' -f1 /proc/loadavg)"
  if run_tests >"$log" 2>&1; then
    result=PASS passed=$((passed + 1))
  else
    result=FAIL
  fi
  secs=$(( $(date +%s) - start ))
  failed="$(grep -E '^\s*--- FAIL|^FAIL\s|^FAILED|^ERROR:' "$log" | sed 's/^\s*//' | head -6 | paste -sd ';' - || true)"
  oks="$(grep -cE '^ok\s' "$log" || true)"
  printf 'run %d/%d: %s in %ds (load at start %s; %s packages ok)%s  log: %s\n' \
    "$i" "$n" "$result" "$secs" "$load" "$oks" "${failed:+; failed: $failed}" "$log"
done
printf 'ci-repeat: %d/%d runs passed\n' "$passed" "$n"
[ "$passed" -eq "$n" ]
