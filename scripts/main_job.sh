#!/usr/bin/env bash
# The README's main job on the embedded database: bring FerretDB up with the results schema,
# queue a two-Firework workflow with plain `lpad add`, run it with plain `rlaunch`, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
work=.firegen/main-job
mkdir -p "$work"
firegen db up --write-launchpad "$work/my_launchpad.yaml"
cat > "$work/wf.yaml" <<'YAML'
name: firegen-foundation-check
fws:
- fw_id: 1
  name: hello
  spec: {_category: cpu, _tasks: [{_fw_name: ScriptTask, script: "echo hello from $(hostname)"}]}
- fw_id: 2
  name: world
  spec: {_category: cpu, _tasks: [{_fw_name: ScriptTask, script: "echo and goodbye"}]}
links: {1: [2]}
metadata: {}
YAML
lpad -l "$work/my_launchpad.yaml" add "$work/wf.yaml"
(cd "$work" && rlaunch -s -l my_launchpad.yaml -w ../../launchers/cpu_worker.yaml rapidfire --nlaunches 0)
lpad -l "$work/my_launchpad.yaml" get_wflows -d more
firegen db status
