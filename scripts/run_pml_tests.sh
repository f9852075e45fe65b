#!/usr/bin/env bash
# Run pytorch-metric-learning's own test files with slade_ext's classes patched into PML's namespace (the issue's
# bar: "PML's own test files for these classes pass with slade_ext's classes in place and no fallback").
#
#   bash scripts/run_pml_tests.sh PATH_TO_A_PML_CHECKOUT [pytest args...]
#
# PML's tests are not in its sdist, so this needs its repository (git clone
# https://github.com/KevinMusgrave/pytorch-metric-learning); it is not part of CI. The tests run on CPU in
# float32 and float64, with FallbackWarning as an error, so a test that needs PML's own implementation fails here.
set -euo pipefail
pml_repo=${1:?usage: run_pml_tests.sh PATH_TO_A_PML_CHECKOUT [pytest args...]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$pml_repo/tests" "$work/tests"
cat > "$work/conftest.py" <<'EOF'
import pytorch_metric_learning.losses as pml_losses
import pytorch_metric_learning.miners as pml_miners

import slade_ext.losses
import slade_ext.miners

for name in slade_ext.losses.__all__:
    setattr(pml_losses, name, getattr(slade_ext.losses, name))
for name in ["MultiSimilarityMiner", "BatchHardMiner", "PairMarginMiner", "TripletMarginMiner"]:
    setattr(pml_miners, name, getattr(slade_ext.miners, name))
EOF
cd "$work"
TEST_DEVICE=${TEST_DEVICE:-cpu} TEST_DTYPES=${TEST_DTYPES:-float32,float64} "$python" -m pytest -q -p no:cacheprovider \
  -W ignore::DeprecationWarning -W error::slade_ext._compat.FallbackWarning "$@" \
  tests/losses/test_multi_similarity_loss.py tests/losses/test_contrastive_loss.py tests/losses/test_ntxent_loss.py \
  tests/losses/test_triplet_margin_loss.py tests/losses/test_self_supervised_loss.py \
  tests/losses/test_cross_batch_memory.py tests/miners/test_multi_similarity_miner.py \
  tests/miners/test_batch_hard_miner.py tests/miners/test_pair_margin_miner.py \
  tests/miners/test_triplet_margin_miner.py
