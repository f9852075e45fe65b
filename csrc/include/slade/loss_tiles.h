// Tile epilogues of the fused losses (loss_rules.h), one copy per device: slade::cpu:: (csrc/cpu/losses_cpu.cpp)
// and slade::cuda:: (csrc/cuda/losses_cuda.cu), reached through SLADE_TILE_DISPATCH (dispatch.h). Drivers:
// csrc/common/losses.cpp.
//
// Which pairs a row sees comes either from the labels (all pairs: positive = same label and not (i, i) of a
// self-comparison, negative = different label, as PML's get_all_pairs_indices) or from explicit pair lists in CSR
// form (row i's positives are pos_cols[pos_ptr[i] .. pos_ptr[i + 1]), columns sorted; duplicates count as often as
// they appear). The CSR is over global rows, so a tile reads its rows' slices.
#pragma once

#include <ATen/ATen.h>

#include "slade/loss_rules.h"
#include "slade/tiles.h"

namespace slade {

struct PairLists {
  at::Tensor pos_ptr, pos_cols, neg_ptr, neg_cols;  // int64, contiguous, on the tile's device; undefined = all pairs
  bool defined() const { return pos_ptr.defined(); }
};

// Row state columns of the [N, 4] tensors exchanged with the epilogues.
//   forward output: (pos_acc, neg_acc, pos_count, neg_count) with acc = lse (MultiSimilarity) or the sum of non-zero
//                   pair losses (Contrastive) and count = pairs seen (MultiSimilarity) or non-zero losses (Contrastive)
//   backward input: (grad_pos_acc, grad_neg_acc, pos_acc, neg_acc)
constexpr int64_t kLossRowState = 4;

namespace cpu {
// Writes rows [tile.row_begin, + tile rows) of `rows_out` ([N, 4], float64).
void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out);
// Overwrites tile.sim with d(loss)/d(s) for every pair of the tile (0 where the row does not see the pair);
// `state` is the [N, 4] float64 backward input.
void loss_weights_tile(Tile& tile, const PairLists& lists, const LossRule& rule, const at::Tensor& state);
}  // namespace cpu

#ifdef WITH_CUDA
namespace cuda {
void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out);
void loss_weights_tile(Tile& tile, const PairLists& lists, const LossRule& rule, const at::Tensor& state);
}  // namespace cuda
#endif

}  // namespace slade
