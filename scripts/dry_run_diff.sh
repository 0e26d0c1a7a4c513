#!/usr/bin/env bash
# What `firegen submit --dry-run` writes for every shipped config, at REV and in the working tree,
# compared line by line (time stamps left out): the check that a refactor left the workflows alone.
#   scripts/dry_run_diff.sh REV        e.g. scripts/dry_run_diff.sh 32d91de
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/dry_run_diff.sh REV}
tmp=$(mktemp -d)
trap 'git worktree remove --force "$tmp/tree" >/dev/null 2>&1; rm -rf "$tmp"' EXIT
git worktree add -q "$tmp/tree" "$rev"
mkdir -p "$tmp/pkg/firegen" "$tmp/old" "$tmp/new"
for d in campaign orchestrator workflows launchers db; do
    if [ -d "$tmp/tree/$d" ]; then ln -s "$tmp/tree/$d" "$tmp/pkg/firegen/$d"; fi
done
status=0
for config in configs/*.yaml; do
    name=$(basename "$config")
    (cd configs && PYTHONPATH="$tmp/pkg" ../.venv/bin/python -m firegen.orchestrator.cli submit "$name" --dry-run \
        -o "$tmp/old/$name" >/dev/null)
    (cd configs && ../.venv/bin/python -m firegen.orchestrator.cli submit "$name" --dry-run -o "$tmp/new/$name" >/dev/null)
    changes=$(diff <(grep -v '^[ -]*\(created_on\|updated_on\):' "$tmp/old/$name") \
                   <(grep -v '^[ -]*\(created_on\|updated_on\):' "$tmp/new/$name") | grep '^[<>]' || true)
    if [ -z "$changes" ]; then echo "$name: same"; else echo "$name: differs"; echo "$changes" | sed 's/^/    /'; status=1; fi
done
exit $status
