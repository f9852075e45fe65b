// The device-specific half of every fused op: an epilogue that consumes one similarity tile.
//
// Drivers (csrc/common/<family>.cpp) validate, normalise, and walk the query rows in blocks; for each block they
// compute tile = rows_block @ refs^T with ATen's GEMM (cuBLAS / MKL / OpenBLAS) and hand it to an epilogue below
// through SLADE_TILE_DISPATCH (dispatch.h). Each epilogue exists twice with the same contract: slade::cpu::
// (csrc/cpu/<family>_cpu.cpp) and slade::cuda:: (csrc/cuda/<family>_cuda.cu, only when WITH_CUDA). The basis family
// owns pair_stats_tile and pair_weights_tile; the mining family owns the rest (selection is pair mining with the
// Confident rule). Nothing ever holds more than one tile, so memory stays O(tile + output) instead of O(N * M).
//
// Index order is part of the contract (CPU and CUDA must agree): pairs come row-major (anchor ascending, then
// reference ascending); triplets lexicographic in (anchor, positive, negative); every index is int64.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>

namespace slade {

// One block of query rows against all references.
struct Tile {
  at::Tensor sim;         // [b, M] closeness values (float32, or float64 for float64 inputs), contiguous
  int64_t row_begin = 0;  // global index of sim's first row
  at::Tensor row_labels;  // [b] int64 labels of these rows (undefined when the op has no labels)
  at::Tensor ref_labels;  // [M] int64 labels of the references (undefined when the op has no labels)
  bool exclude_self = false;  // query set == reference set: skip the pair (i, i)
};

// Which pair rule a pair epilogue applies. Values are compared in "closeness" space: the drivers hand every
// epilogue a closeness tile (closeness_tile in common.h: a dot product, or a distance negated) with inverted = true,
// larger is closer. inverted = false reads a cosine tile as the L2 distance of unit vectors, sqrt(max(2 - 2 s, 0)):
// no driver uses it any more, and it goes with the next change of the CUDA epilogues (docs/architecture.md).
enum class PairRuleKind { MultiSimilarity, PairMargin, Confident };

struct PairRule {
  PairRuleKind kind = PairRuleKind::MultiSimilarity;
  bool inverted = true;
  double epsilon = 0.1;       // MultiSimilarity
  double pos_margin = 0.2;    // PairMargin
  double neg_margin = 0.8;    // PairMargin
  double t_pos = 0.0;         // Confident: positive if s >= t_pos
  double t_neg = 0.0;         // Confident: negative if s <= t_neg
  bool agree = false;         // Confident: also require same (pos) / different (neg) pseudo labels, both >= 0
};
// Candidate pairs (labels needed except for Confident/literal):
//   pos candidate: same label, not self;  neg candidate: different label.
// MultiSimilarity (pytorch-metric-learning's rule), per row i over its candidates:
//   inverted:     pos if v - eps < max_neg_i;   neg if v + eps > min_pos_i
//   not inverted: pos if v + eps > min_neg_i;   neg if v - eps < max_pos_i
//   (max over an empty set = -inf, min = +inf, so rows without the other kind select nothing)
// PairMargin: inverted: pos if v < pos_margin, neg if v > neg_margin; not inverted: pos if v > pos_margin,
//   neg if v < neg_margin.
// Confident (docs/method.md): every j != i (exclude_self) is a candidate of both kinds; pos if s >= t_pos, neg if
//   s <= t_neg; with agree, pos also needs l_i == l_j >= 0 and neg needs l_i != l_j, both >= 0.

// Triplet rule (pytorch-metric-learning's TripletMarginMiner), tm = inverted ? v_ap - v_an : v_an - v_ap:
//   all: tm <= margin; hard: tm <= margin && tm <= 0; semihard: tm <= margin && tm > 0; easy: tm > margin.
enum class TripletType { All, Hard, SemiHard, Easy };
struct TripletRule {
  TripletType type = TripletType::All;
  bool inverted = true;
  double margin = 0.2;
  int64_t max_per_anchor = -1;  // keep the first k triplets of each anchor in (p, n) order; -1 = all
};

// What a mining epilogue returns for one tile: its K index tensors (the eager form, which every CUDA epilogue and most
// CPU ones give), or their lengths and a writer that later fills the op's final outputs in place (the deferred form,
// collect_tiles in drivers.h). The CPU pair epilogue defers a tile that selects many of its pairs: it keeps one
// verdict byte per pair instead of 16 bytes of indices per selected pair, and the op then writes each index once
// instead of writing it into the tile's own outputs and copying it into their concatenation.
template <size_t K>
struct TileOutputs {
  std::array<at::Tensor, K> tensors;  // eager
  std::array<int64_t, K> counts{};    // deferred: the length of each output
  std::function<void(const std::array<int64_t*, K>&)> write;  // deferred: writes output k from address k on
  int64_t held_bytes = 0;             // deferred: host memory kept until `write`

  TileOutputs() = default;
  TileOutputs(std::array<at::Tensor, K> eager) : tensors(std::move(eager)) {}  // NOLINT: implicit on purpose
  bool deferred() const { return bool(write); }
  int64_t count(size_t k) const { return deferred() ? counts[k] : tensors[k].numel(); }
};

namespace cpu {
// acc: [6] float64 on the tile's device, accumulated in place:
//   (sum_pos, sumsq_pos, count_pos, sum_neg, sumsq_neg, count_neg) over pairs with both labels >= 0, not self;
//   pos = same label, neg = different label.
void pair_stats_tile(const Tile& tile, at::Tensor& acc);
// Overwrites tile.sim with d(loss)/d(s) for the pair statistics: for a pos pair a_pos + b_pos * s, for a neg pair
// a_neg + b_neg * s, 0 for ignored pairs (either label < 0, or self). coef = {a_pos, b_pos, a_neg, b_neg}.
void pair_weights_tile(Tile& tile, const std::array<double, 4>& coef);
// Returns {anchors_pos, refs_pos, anchors_neg, refs_neg} selected by `rule` in this tile (global indices), deferred
// when the tile selects at least one pair in 16.
TileOutputs<4> mine_pairs_tile(const Tile& tile, const PairRule& rule);
// Batch hard: per row, the hardest positive (least close) and hardest negative (closest); ties -> smallest index.
// Rows lacking either are skipped. Returns {anchors, positives, negatives}.
std::array<at::Tensor, 3> mine_batch_hard_tile(const Tile& tile, bool inverted);
// Returns {anchors, positives, negatives} satisfying `rule`.
std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule);
}  // namespace cpu

#ifdef WITH_CUDA
namespace cuda {
void pair_stats_tile(const Tile& tile, at::Tensor& acc);
void pair_weights_tile(Tile& tile, const std::array<double, 4>& coef);
std::array<at::Tensor, 4> mine_pairs_tile(const Tile& tile, const PairRule& rule);
std::array<at::Tensor, 3> mine_batch_hard_tile(const Tile& tile, bool inverted);
std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule);
}  // namespace cuda
#endif

}  // namespace slade
