// Pieces shared by the CPU tile epilogues (csrc/cpu/*.cpp), as csrc/cuda/epilogue_utils.cuh is for the CUDA ones.
#pragma once

#include <ATen/ATen.h>

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

}  // namespace detail
}  // namespace cpu
}  // namespace slade
