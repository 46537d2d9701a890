#!/usr/bin/env bash
# Installs the two peers that benchmarks/peers.py times, into the given Python's environment,
# without touching its torch (everything with --no-deps):
#   higher 0.2.1       pure Python, the PyPI wheel as it is.
#   learn2learn 0.2.0  the latest PyPI release, an sdist only. Its Cython data modules do not
#                      compile on Python >= 3.11 (their generated C includes longintrepr.h) and
#                      `import learn2learn` pulls in torchvision, gym, qpth, ... for its vision,
#                      RL and text parts. So this script builds a wheel from the sdist's own
#                      pure-Python `learn2learn.algorithms` (MAML, MetaSGD, GBML, unchanged
#                      files) and `learn2learn.utils` (clone_module, update_module), with a
#                      package __init__ that imports only those, and no C extensions.
# Usage: bash benchmarks/install_peers.sh [PYTHON [WHEELS]]   (default: .venv/bin/python); `make
# peers`. Needs the network (PyPI) once; nothing at run time. Neither peer is a dependency of
# metagan. WHEELS: a folder; if it holds the two wheels they are installed from there with no
# network (the GPU machine), else they are built and also saved there (to carry them over).
set -euo pipefail
PY="${1:-.venv/bin/python}"
WHEELS="${2:-}"
TORCH_BEFORE="$("$PY" -c 'import torch; print(torch.__version__)')"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
check_torch() {
  local after
  after="$("$PY" -c 'import torch; print(torch.__version__)')"
  if [ "$TORCH_BEFORE" != "$after" ]; then
    echo "install_peers.sh: torch changed from $TORCH_BEFORE to $after" >&2
    exit 1
  fi
  "$PY" -c 'import higher, learn2learn, torch; print("peers: higher 0.2.1, learn2learn", learn2learn.__version__, "(algorithms only), torch", torch.__version__)'
}
if [ -n "$WHEELS" ] && ls "$WHEELS"/higher-*.whl "$WHEELS"/learn2learn-*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-deps --no-index "$WHEELS"/higher-*.whl "$WHEELS"/learn2learn-*.whl
  check_torch
  exit 0
fi

"$PY" -m pip download -q --no-deps --dest "$TMP" "higher==0.2.1"
"$PY" -m pip install -q --no-deps "$TMP"/higher-0.2.1-py3-none-any.whl

"$PY" -m pip download -q --no-deps --no-binary :all: --dest "$TMP" "learn2learn==0.2.0"
tar -C "$TMP" -xzf "$TMP/learn2learn-0.2.0.tar.gz"
SRC="$TMP/learn2learn-0.2.0/learn2learn"
PKG="$TMP/l2l/learn2learn"
mkdir -p "$PKG/algorithms" "$PKG/utils"
cp "$SRC/_version.py" "$PKG/"
cp "$SRC/utils/__init__.py" "$PKG/utils/"
cp "$SRC/algorithms/"{base_learner,maml,meta_sgd,gbml}.py "$PKG/algorithms/"
cat > "$PKG/__init__.py" <<'EOF'
# learn2learn 0.2.0, its pure-Python algorithms only (metagan's benchmarks/install_peers.sh).
from ._version import __version__
from . import algorithms
from .utils import *
EOF
cat > "$PKG/algorithms/__init__.py" <<'EOF'
from .maml import MAML, maml_update
from .meta_sgd import MetaSGD, meta_sgd_update
EOF
cat > "$TMP/l2l/pyproject.toml" <<'EOF'
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "learn2learn"
version = "0.2.0"
description = "learn2learn 0.2.0's pure-Python algorithms (MAML, MetaSGD) from its PyPI sdist"

[tool.setuptools.packages.find]
include = ["learn2learn", "learn2learn.*"]
EOF
cp "$TMP/learn2learn-0.2.0/LICENSE" "$TMP/l2l/" 2>/dev/null || true
"$PY" -m pip wheel -q --no-deps --no-build-isolation --wheel-dir "$TMP/wheels" "$TMP/l2l"
"$PY" -m pip install -q --no-deps "$TMP"/wheels/learn2learn-*.whl
if [ -n "$WHEELS" ]; then
  mkdir -p "$WHEELS"
  cp "$TMP"/higher-0.2.1-py3-none-any.whl "$TMP"/wheels/learn2learn-*.whl "$WHEELS"/
fi
check_torch
