#!/usr/bin/env bash
# Make the PCX peer environment: $REPO/.venv-pcx with pcx 0.6.3 and a CPU jax it works with.
#
#   bash benchmarks/peers/setup_pcx.sh          # idempotent: does nothing if the venv works
#   PYTHON=python3.12 bash benchmarks/peers/setup_pcx.sh
#
# pcx 0.6.3 requires Python >= 3.11, jax >= 0.4.33, < 0.5, equinox >= 0.11.7, < 0.12 and
# optax >= 0.2.3, < 0.3.  jax/jaxlib are pinned to 0.4.38 (the newest 0.4.x; CPU wheels from
# PyPI); pip then resolves equinox 0.11.x and an optax 0.2.x that supports that jax.
# Only PyPI is used.  Afterwards: .venv-pcx/bin/python benchmarks/peers/pcx_mlp.py ...
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
VENV="$REPO/.venv-pcx"
PYTHON="${PYTHON:-python3}"

PCX_VERSION="0.6.3"
JAX_VERSION="0.4.38"

check() {
    "$VENV/bin/python" - "$PCX_VERSION" "$JAX_VERSION" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
import jax, jax.numpy as jnp, optax, numpy, equinox  # noqa: F401
import pcx, pcx.predictive_coding, pcx.nn, pcx.utils, pcx.functional  # noqa: F401
assert version("pcx") == sys.argv[1], version("pcx")
assert jax.__version__ == sys.argv[2], jax.__version__
assert jax.default_backend() == "cpu"
assert float(jax.jit(lambda v: (v * v).sum())(jnp.arange(3.0))) == 5.0
PY
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "setup_pcx: $VENV already works (pcx $PCX_VERSION, jax $JAX_VERSION)"
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "setup_pcx: pcx $PCX_VERSION needs Python >= 3.11 (set PYTHON=...)" >&2; exit 1; }
    "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "pcx==$PCX_VERSION" "jax[cpu]==$JAX_VERSION" "jaxlib==$JAX_VERSION" numpy

if ! check; then
    echo "setup_pcx: $VENV was installed but pcx/jax do not import or run" >&2
    exit 1
fi
echo "setup_pcx: ready: $("$VENV/bin/python" -c 'import jax, optax; from importlib.metadata import version as v; print("pcx", v("pcx"), "jax", jax.__version__, "optax", optax.__version__, "equinox", v("equinox"))')"
