#!/usr/bin/env bash
# Sets up .venv with torch and slade_ext (the kernels compile during the install: the CPU kernels always, the CUDA
# kernels when a GPU is visible, for its architecture only, or when FORCE_CUDA=1).
#   bash scripts/install.sh          # for the main job (`slade run`)
#   bash scripts/install.sh --test   # plus what the tests need
# Environment: TORCH_SPEC (default torch==2.14.1), FORCE_CUDA=1 (compile the CUDA kernels without a GPU, for
# TORCH_CUDA_ARCH_LIST or else 7.5-9.0+PTX) or FORCE_CUDA=0 (CPU kernels only even with a GPU), SKIP_APT=1 to leave
# system packages alone, SLADE_SMALL_FONTS=1 to skip the two largest font packages.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="cpu"
[ "${1:-}" = "--test" ] && extras="cpu,test"

# Debian fonts for the glyph benchmark (every package of docs/data.md's list, about 227 MB; SLADE_SMALL_FONTS=1
# skips the two largest, noto-cjk and hanazono, 79 MB) and Fashion-MNIST.
FONT_LIST=python/slade/data/glyphs/debian_fonts.txt
if [ "${SLADE_SMALL_FONTS:-0}" = "1" ]; then
  FONTS=$(grep -v '^#' "$FONT_LIST" | grep -v ' large$' | cut -d' ' -f1)
else
  FONTS=$(grep -v '^#' "$FONT_LIST" | cut -d' ' -f1)
fi
APT_PACKAGES="fontconfig $FONTS dataset-fashion-mnist"
if [ "${SKIP_APT:-0}" != "1" ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  missing=$(for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends $missing >/dev/null
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip setuptools wheel ninja
.venv/bin/pip install -q "${TORCH_SPEC:-torch==2.14.1}"
# --no-build-isolation: the extension must be compiled against the torch it will run with.
echo "slade_ext: compiling the kernels (CUDA ones only with a GPU or FORCE_CUDA=1; ~2 min on 2 cores)" >&2
.venv/bin/pip install -q --no-build-isolation ".[${extras}]"
# -P keeps the checkout off sys.path, so this reports the installed build (not a JIT build of the sources).
.venv/bin/python -P -c "import slade_ext, json; print('slade_ext build:', json.dumps(slade_ext.build_info()))"
