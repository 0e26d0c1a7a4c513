#!/usr/bin/env bash
# Set up everything firegen needs on a fresh Debian machine; safe to rerun (it skips what is done).
#   - Debian packages listed in DEB_PACKAGES (installed only when missing, with apt-get as root): the DFT
#     codes, and chromium for the browser tests of the report and the dashboard
#   - a Python venv in .venv with firegen (editable), deepmd-kit[cpu,lmp], FireWorks, dpdata, ...
#   - FerretDB v1.24.2 for the embedded database (firegen db install)
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=${FIREGEN_DEB_PACKAGES-"cp2k cp2k-data quantum-espresso quantum-espresso-data openmpi-bin chromium"}
PYTHON=${PYTHON:-python3}

missing=()
for pkg in $DEB_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "bootstrap: installing Debian packages: ${missing[*]}"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        # the DFT codes and the browser are optional for firegen itself: their labelers and tests say what is missing
        echo "bootstrap: warning: Debian packages ${missing[*]} are missing (CP2K/QE labelers or browser tests" \
             "unavailable);" \
             "install them with 'sudo apt-get install ${missing[*]}'" >&2
    fi
fi

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "bootstrap: firegen needs Python >= 3.11 (found $("$PYTHON" --version)); set PYTHON=/path/to/python3.11" >&2
    exit 1
}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.firegen-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "bootstrap: installing Python packages into .venv (a few minutes the first time)"
    .venv/bin/pip install -q --upgrade pip wheel
    .venv/bin/pip install -q -e ".[test,xtb]"
    rm -f .venv/.firegen-* && touch "$stamp"
fi

# FerretDB 1.x updates are not atomic; this hook makes plain rlaunch/lpad in the venv serialize their
# read-modify-write calls to an embedded server running on this host (see db/embedded/write_lock.py)
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -c 'from firegen.db.embedded.write_lock import pth_hook; print(pth_hook())' \
    > "$site/firegen_ferretdb_guard.pth"

.venv/bin/firegen db install
echo "bootstrap: ready ($(.venv/bin/firegen version), $(.venv/bin/python -c 'import deepmd; print("deepmd-kit", deepmd.__version__)'))"
