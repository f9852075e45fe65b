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

#include <array>
#include <atomic>
#include <vector>

#include "slade/loss_rules.h"
#include "slade/tiles.h"

namespace slade {

struct Distance;  // common.h

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
// The pairs of a contrastive forward whose loss is non-zero, with their closeness: all its backward needs
// (contrastive_pairs_backward). Rows (0 = the first query row) and sides (0 = positive, 1 = negative) are recorded
// as the tiles go by, in any order of rows; past `max_pairs` the record is dropped and the backward recomputes the
// tiles, which is then the cheaper of the two (csrc/common/losses.cpp says where the line is).
class ActivePairs {
 public:
  struct Pair {
    int64_t col;
    double closeness;  // the tile's value, exactly (float32 and float64 both fit)
  };
  ActivePairs(int64_t n_rows, int64_t max_pairs) : sides_(2 * n_rows), max_pairs_(max_pairs) {}
  bool dropped() const { return dropped_.load(std::memory_order_relaxed); }
  // Row `row`'s pairs of both sides; each row once. Thread-safe across rows.
  void record(int64_t row, std::vector<Pair>&& pos, std::vector<Pair>&& neg);
  // (ptr [2 N + 1], cols [K], closeness [K] float64, CPU): row i's positives are entries [ptr[2i], ptr[2i + 1]),
  // its negatives [ptr[2i + 1], ptr[2i + 2]); three empty tensors when the record was dropped.
  std::array<at::Tensor, 3> tensors();

 private:
  std::vector<std::vector<Pair>> sides_;
  int64_t max_pairs_;
  std::atomic<int64_t> recorded_{0};
  std::atomic<bool> dropped_{false};
};

// The multi-similarity forward's gradients of each query row's two accumulators (pos_acc, neg_acc) in the row's
// (normalised) features, [n, 2, d] in the tiles' dtype, for a backward that needs only the rows' gradient: it then
// combines them with the upstream gradient instead of recomputing the tiles. Filled tile by tile from the tile's
// exponentials (the int32-label sweeps); `computed` turns false, and the driver drops them, on a tile that cannot.
struct RowGradients {
  at::Tensor refs;  // [m, d], what the tiles were made of
  at::Tensor out;   // [n, 2, d], zeros at the start
  bool computed = true;
};

// Writes rows [tile.row_begin, + tile rows) of `rows_out` ([N, 4], float64). With `active` (the contrastive rule
// only), also records the tile's pairs with a non-zero loss; with `grads` (multi-similarity on a similarity, against
// references, no pair lists), also adds the tile's rows' gradients. `first_row` is the first query row's number.
void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out,
                    ActivePairs* active = nullptr, int64_t first_row = 0, RowGradients* grads = nullptr);
// The contrastive backward from an ActivePairs record instead of tiles: adds each recorded pair's gradient to
// grad_rows ([n, d], the query rows') and grad_refs ([m, d]), either undefined when not wanted; against itself
// grad_rows may be a view of grad_refs. rows / refs are the inputs the tiles were made of (PairInputs), `state`
// the [n, 4] float64 backward input (grad_pos_acc, grad_neg_acc, pos_acc, neg_acc) of the query rows.
void contrastive_pairs_backward(const std::array<at::Tensor, 3>& active, const at::Tensor& rows,
                                const at::Tensor& refs, const Distance& distance, const LossRule& rule,
                                const at::Tensor& state, at::Tensor grad_rows, at::Tensor grad_refs);
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
