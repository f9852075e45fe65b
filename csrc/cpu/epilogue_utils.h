// Pieces shared by the CPU tile epilogues (csrc/cpu/*.cpp), as csrc/cuda/epilogue_utils.cuh is for the CUDA ones.
#pragma once

#include <ATen/ATen.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <vector>

#include "slade/tiles.h"

namespace slade {
namespace cpu {
namespace detail {

constexpr int64_t kRowChunk = 8;  // rows per parallel work item

// Label of row i / reference j, or -1 when the op has no labels.
struct LabelView {
  const int64_t* rows = nullptr;
  const int64_t* refs = nullptr;
  explicit LabelView(const Tile& t)
      : rows(t.row_labels.defined() ? t.row_labels.data_ptr<int64_t>() : nullptr),
        refs(t.ref_labels.defined() ? t.ref_labels.data_ptr<int64_t>() : nullptr) {}
  int64_t row(int64_t i) const { return rows ? rows[i] : -1; }
  int64_t ref(int64_t j) const { return refs ? refs[j] : -1; }
};

// PairMargin's verdicts (bit 0: positive, bit 1: negative) of one row of closeness values, without branches and on
// int32 labels, so that the compiler vectorises the loop: through select_pair it took ~10 cycles a pair, most of
// the miner's time besides the GEMM (benchmarks/RESULTS.md, "A vectorised pair-margin epilogue"). The rule is
// select_pair's PairMargin case (rules.h) restated on 32-bit values; the CUDA epilogue keeps select_pair, and the
// two meet in tests/ext/test_mining.py on a GPU. The contrastive loss's pairs with a non-zero loss are the same
// rule (margin - v > 0 exactly when v < margin), so its CPU epilogue starts from these verdicts too.
template <typename T>
inline void pair_margin_verdicts(const T* row, int32_t li, const int32_t* ref_labels, int64_t m, int64_t self_j,
                                 T pos_margin, T neg_margin, uint8_t* verdict, int64_t& n_pos, int64_t& n_neg) {
  int64_t np = 0, nn = 0;
  for (int64_t j = 0; j < m; ++j) {
    const T v = row[j];
    const bool same = ref_labels[j] == li;
    const bool pos = same & (v < pos_margin);
    const bool neg = !same & (v > neg_margin);
    verdict[j] = uint8_t(pos) | uint8_t(neg << 1);
    np += pos;
    nn += neg;
  }
  if (self_j >= 0 && self_j < m && (verdict[self_j] & 1)) {  // (i, i) of a self-comparison is no positive
    verdict[self_j] = 0;
    --np;
  }
  n_pos = np;
  n_neg = nn;
}

// The labels as int32 when every one fits (the verdict loops), else empty.
inline std::vector<int32_t> labels_as_int32(const at::Tensor& labels) {
  if (!labels.defined() || labels.numel() == 0) return {};
  const auto [lo, hi] = at::aminmax(labels);
  if (lo.item<int64_t>() < INT32_MIN || hi.item<int64_t>() > INT32_MAX) return {};
  const int64_t* src = labels.data_ptr<int64_t>();
  return std::vector<int32_t>(src, src + labels.numel());
}

// A tile's row and reference labels as int32 for the branch-free loops, or unusable (both left empty or only the
// references converted): when the caller's loop does not take them (`wanted` false) or a label does not fit.
struct TileLabels32 {
  std::vector<int32_t> rows, refs;
  TileLabels32(const Tile& tile, bool wanted) {
    if (!wanted) return;
    refs = labels_as_int32(tile.ref_labels);
    if (!refs.empty()) rows = labels_as_int32(tile.row_labels);
  }
  bool usable() const { return !rows.empty(); }
};

// Calls fn(j, verdict) for the non-zero verdict bytes of a row, in ascending j: most rows select few pairs, so 8
// empty verdicts are skipped at once.
template <typename F>
inline void for_each_verdict(const uint8_t* verdict, int64_t m, F&& fn) {
  for (int64_t j = 0; j < m; ++j) {
    if ((j & 7) == 0 && j + 8 <= m) {
      uint64_t word;
      std::memcpy(&word, verdict + j, sizeof(word));
      if (word == 0) {
        j += 7;
        continue;
      }
    }
    if (verdict[j] != 0) fn(j, verdict[j]);
  }
}

}  // namespace detail
}  // namespace cpu
}  // namespace slade
