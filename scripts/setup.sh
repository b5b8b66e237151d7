#!/usr/bin/env bash
# Installs what the build needs on a fresh Debian machine: compilers and libraries from Debian,
# LibTorch as the pinned PyTorch CPU wheel (never an unpinned torch: that pulls a CUDA build).
# Idempotent: skips what is already there.
set -euo pipefail

DEBIAN_PACKAGES=(build-essential cmake ninja-build ccache pkg-config
  libyaml-cpp-dev libspdlog-dev libfmt-dev libgtest-dev libgmock-dev
  libopencv-dev libpcre2-dev libzstd-dev zlib1g-dev libgloo-dev
  nlohmann-json3-dev libspng-dev libmd-dev libxxhash-dev libarchive-dev libjpeg-dev)
TORCH_VERSION=2.13.0
PILLOW_VERSION=11.3.0  # the tests read the PNGs we write back with Pillow
TENSORBOARD_VERSION=2.21.0  # the tests read our event files with TensorBoard's own reader
MATPLOTLIB_VERSION=3.10.7  # microdit-study's plot (scripts/study.py)
PYTHON=${PYTHON:-python3}
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$TORCH_VERSION') else 1)" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION (CPU wheel)"
  "$PYTHON" -m pip install -q "torch==$TORCH_VERSION"
fi
if ! "$PYTHON" -c "import PIL, sys; sys.exit(0 if PIL.__version__ == '$PILLOW_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing pillow==$PILLOW_VERSION"
  "$PYTHON" -m pip install -q "pillow==$PILLOW_VERSION"
fi
if ! "$PYTHON" -c "import tensorboard, sys; sys.exit(0 if tensorboard.__version__ == '$TENSORBOARD_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing tensorboard==$TENSORBOARD_VERSION"
  "$PYTHON" -m pip install -q "tensorboard==$TENSORBOARD_VERSION"
fi
if ! "$PYTHON" -c "import matplotlib, sys; sys.exit(0 if matplotlib.__version__ == '$MATPLOTLIB_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing matplotlib==$MATPLOTLIB_VERSION"
  "$PYTHON" -m pip install -q "matplotlib==$MATPLOTLIB_VERSION"
fi
echo "setup: ready (torch $("$PYTHON" -c 'import torch; print(torch.__version__)'))"
