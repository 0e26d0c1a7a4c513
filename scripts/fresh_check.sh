#!/usr/bin/env bash
# The README's two commands from nothing, as a new user runs them: clone the committed HEAD into an
# empty temporary folder and run `make run` and `make test` there, with an empty Go setup (GOPATH,
# GOBIN, module cache, build cache), no .venv and a FIREGEN_HOME of its own; no ferretdb of this
# machine is on PATH. Prints each command's exit code and wall time; exits 1 when one failed.
# About 35 minutes on 2 cores (too slow for CI's default run). Debian packages and pip's download
# cache are the machine's own (they are the same files a fresh machine downloads).
#   scripts/fresh_check.sh [--keep] [COMMAND ...]      default: "make run" "make test"
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
keep=0
if [ "${1:-}" = --keep ]; then keep=1; shift; fi
commands=("$@")
[ ${#commands[@]} -gt 0 ] || commands=("make run" "make test")

root=$(mktemp -d -t firegen-fresh-XXXXXX)
git clone -q --no-local "$repo" "$root/firegen" || { echo "fresh_check: cannot clone $repo" >&2; exit 1; }
head=$(git -C "$root/firegen" log -1 --format='%h %s' | cut -c1-80)
mkdir -p "$root/go" "$root/home"
export GOPATH="$root/go" GOBIN="$root/go/bin" GOMODCACHE="$root/go/pkg/mod" GOCACHE="$root/go/build-cache"
export FIREGEN_HOME="$root/home/.firegen"
unset FIREGEN_FERRETDB FIREGEN_FERRETDB_DIR FIREGEN_MONGO_URI FIREGEN_LAUNCHPAD FW_CONFIG_FILE VIRTUAL_ENV GOFLAGS

# PATH without the folders that hold a ferretdb (a user's binary would hide a broken install)
path=""
IFS=: read -ra entries <<< "$PATH"
for entry in "${entries[@]}"; do
    if [ -n "$entry" ] && [ -x "$entry/ferretdb" ]; then
        echo "fresh_check: leaving $entry off PATH (it holds a ferretdb)"
        continue
    fi
    path="${path:+$path:}$entry"
done
export PATH="$path"

echo "fresh_check: $head"
echo "fresh_check: in $root/firegen (GOPATH, GOCACHE and FIREGEN_HOME under $root)"
summary=()
failed=0
for i in "${!commands[@]}"; do
    cmd=${commands[$i]}
    log="$root/command-$((i + 1)).log"
    echo "fresh_check: \$ $cmd    (output: $log)"
    start=$(date +%s)
    (cd "$root/firegen" && bash -c "$cmd") > "$log" 2>&1
    code=$?
    wall=$(( $(date +%s) - start ))
    tail -n 5 "$log" | sed 's/^/    /'
    summary+=("$(printf '%-12s exit %-3s %6d s' "$cmd" "$code" "$wall")")
    [ "$code" = 0 ] || failed=1
done

# leave no server behind, whatever the commands did
if [ -x "$root/firegen/.venv/bin/firegen" ]; then
    (cd "$root/firegen" && .venv/bin/firegen db down >/dev/null 2>&1)
fi
echo "fresh_check: results for $head"
printf '  %s\n' "${summary[@]}"
if [ "$keep" = 1 ] || [ "$failed" = 1 ]; then
    echo "fresh_check: kept $root"
else
    chmod -R u+w "$root" 2>/dev/null
    rm -rf "$root"
fi
exit "$failed"
