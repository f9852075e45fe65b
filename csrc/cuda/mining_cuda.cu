// CUDA epilogues of the mining family (csrc/common/mining.cpp): pair mining and confident-pair selection, batch-hard
// triplets (one per anchor) and triplet-margin triplets (all qualifying, capped). Same contract as
// csrc/cpu/mining_cpu.cpp (the spec); the per-pair and per-triplet rules are the shared ones of slade/rules.h.
#include <ATen/Dispatch.h>

#include "epilogue_utils.cuh"
#include "slade/rules.h"
#include "slade/tiles.h"

namespace slade {
namespace cuda {
namespace {

using detail::BlockSum;
using detail::check_tile;
using detail::grid_for;
using detail::kThreads;
using detail::OrderedCompaction;
using detail::Plus;
using detail::row_offsets;
using detail::tile_view;
using detail::TileView;

// ---- pair mining / selection ----------------------------------------------------------------------------------

struct PairCounts {
  int64_t pos, neg;
  __device__ PairCounts operator+(const PairCounts& o) const { return {pos + o.pos, neg + o.neg}; }
};

struct MergeExtrema {
  template <typename E>
  __device__ E operator()(E a, const E& b) const {
    a.merge(b);
    return a;
  }
};

// One block per row (grid-strided). Counts the row's selected positives and negatives into counts[0][i + 1] and
// counts[1][i + 1]; for rules that need them, first reduces the row's extrema and keeps them in extrema[i] for the
// write pass.
template <typename T>
__global__ void count_pairs_kernel(TileView<T> t, PairRule rule, RowExtrema<T>* extrema, int64_t* counts) {
  __shared__ typename cub::BlockReduce<RowExtrema<T>, kThreads>::TempStorage extrema_temp;
  __shared__ RowExtrema<T> row_extrema;
  __shared__ typename BlockSum<PairCounts>::Storage sum_storage;
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const T* row = t.row(i);
    const int64_t li = t.lab.row(i);
    auto e = RowExtrema<T>::empty();
    if (rule_needs_extrema(rule)) {
      for (int64_t j = threadIdx.x; j < t.cols; j += kThreads) {
        const int64_t lj = t.lab.ref(j);
        e.add(closeness_value(row[j], rule.inverted), is_pos_candidate(li, lj, t.self_pair(i, j)),
              is_neg_candidate(li, lj));
      }
      e = cub::BlockReduce<RowExtrema<T>, kThreads>(extrema_temp).Reduce(e, MergeExtrema{});
      if (threadIdx.x == 0) {
        row_extrema = e;
        extrema[i] = e;
      }
      __syncthreads();
      e = row_extrema;  // rewritten only in the next row, after BlockSum's barriers
    }
    PairCounts c{0, 0};
    for (int64_t j = threadIdx.x; j < t.cols; j += kThreads) {
      bool pos, neg;
      select_pair(rule, closeness_value(row[j], rule.inverted), li, t.lab.ref(j), t.self_pair(i, j), e, pos, neg);
      c.pos += pos;
      c.neg += neg;
    }
    c = BlockSum<PairCounts>{sum_storage}(c);
    if (threadIdx.x == 0) {
      counts[i + 1] = c.pos;
      counts[t.rows + 1 + i + 1] = c.neg;
    }
  }
}

// One block per row (grid-strided): walks the row in rounds of kThreads references and writes each round's selected
// pairs at the row's offsets in ascending reference order (ordered block scan), stopping once the row is complete.
template <typename T>
__global__ void write_pairs_kernel(TileView<T> t, PairRule rule, const RowExtrema<T>* extrema, const int64_t* offsets,
                                   int64_t* a1, int64_t* p, int64_t* a2, int64_t* n) {
  __shared__ typename OrderedCompaction<PairCounts>::Scan::TempStorage scan_temp;
  const int64_t* pos_offsets = offsets;
  const int64_t* neg_offsets = offsets + t.rows + 1;
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const T* row = t.row(i);
    const int64_t gi = t.row_begin + i, li = t.lab.row(i);
    const auto e = extrema ? extrema[i] : RowExtrema<T>::empty();
    PairCounts w{pos_offsets[i], neg_offsets[i]};
    const PairCounts end{pos_offsets[i + 1], neg_offsets[i + 1]};
    for (int64_t j0 = 0; j0 < t.cols && (w.pos < end.pos || w.neg < end.neg); j0 += kThreads) {
      const int64_t j = j0 + threadIdx.x;
      bool pos = false, neg = false;
      if (j < t.cols) {
        select_pair(rule, closeness_value(row[j], rule.inverted), li, t.lab.ref(j), t.self_pair(i, j), e, pos, neg);
      }
      PairCounts total;
      const PairCounts r = OrderedCompaction<PairCounts>{scan_temp}.rank(PairCounts{pos, neg}, total);
      if (pos) {
        a1[w.pos + r.pos] = gi;
        p[w.pos + r.pos] = j;
      }
      if (neg) {
        a2[w.neg + r.neg] = gi;
        n[w.neg + r.neg] = j;
      }
      w = w + total;
    }
  }
}

void check_labels_given(const Tile& tile, const char* op) {
  TORCH_CHECK(tile.row_labels.defined() && tile.ref_labels.defined(), op, ": labels are required");
}

// ---- batch hard -----------------------------------------------------------------------------------------------

// The hardest candidate seen so far; j < 0 means none.
template <typename T>
struct Hardest {
  T v;
  int64_t j;
};
template <typename T>
struct HardestPair {
  Hardest<T> pos, neg;
};

// The harder of two candidates by rules.h's strict comparisons; equally hard ones keep the smaller index, which is
// what the CPU's ascending scan keeps. Order-independent, so it serves both the per-thread scan and the block reduce.
template <typename T>
struct HarderOf {
  bool inverted;
  __device__ Hardest<T> pick(const Hardest<T>& a, const Hardest<T>& b, bool positive) const {
    if (a.j < 0) return b;
    if (b.j < 0) return a;
    const bool a_harder = positive ? harder_positive(a.v, b.v, inverted) : harder_negative(a.v, b.v, inverted);
    const bool b_harder = positive ? harder_positive(b.v, a.v, inverted) : harder_negative(b.v, a.v, inverted);
    if (a_harder != b_harder) return a_harder ? a : b;
    return a.j < b.j ? a : b;
  }
  __device__ HardestPair<T> operator()(const HardestPair<T>& a, const HardestPair<T>& b) const {
    return {pick(a.pos, b.pos, true), pick(a.neg, b.neg, false)};
  }
};

// One block per row (grid-strided): hardest[0][i] / hardest[1][i] = the row's hardest positive / negative, or -1.
template <typename T>
__global__ void batch_hard_kernel(TileView<T> t, bool inverted, int64_t* hardest) {
  __shared__ typename cub::BlockReduce<HardestPair<T>, kThreads>::TempStorage temp;
  const HarderOf<T> harder{inverted};
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const T* row = t.row(i);
    const int64_t li = t.lab.row(i);
    HardestPair<T> h{{T(0), -1}, {T(0), -1}};
    for (int64_t j = threadIdx.x; j < t.cols; j += kThreads) {
      const T v = closeness_value(row[j], inverted);
      const int64_t lj = t.lab.ref(j);
      const HardestPair<T> here{{v, is_pos_candidate(li, lj, t.self_pair(i, j)) ? j : -1},
                                {v, is_neg_candidate(li, lj) ? j : -1}};
      h = harder(h, here);
    }
    h = cub::BlockReduce<HardestPair<T>, kThreads>(temp).Reduce(h, harder);
    if (threadIdx.x == 0) {
      hardest[i] = h.pos.j;
      hardest[t.rows + i] = h.neg.j;
    }
    __syncthreads();  // temp is reused by the next row
  }
}

// ---- triplet margin -------------------------------------------------------------------------------------------

using IndexCompaction = OrderedCompaction<int64_t>;
using ScanTemp = IndexCompaction::Scan::TempStorage;

// Writes row i's negative candidates, ascending, to negs[0, n) and returns n (block-wide; ends with a barrier so
// the whole block sees negs).
template <typename T>
__device__ int64_t compact_negatives(const TileView<T>& t, int64_t i, ScanTemp& temp, int64_t* negs) {
  const int64_t li = t.lab.row(i);
  int64_t n = 0;
  for (int64_t j0 = 0; j0 < t.cols; j0 += kThreads) {
    const int64_t j = j0 + threadIdx.x;
    const int64_t keep = j < t.cols && is_neg_candidate(li, t.lab.ref(j));
    int64_t total;
    const int64_t r = IndexCompaction{temp}.rank(keep, total);
    if (keep) negs[n + r] = j;
    n += total;
  }
  __syncthreads();
  return n;
}

// Calls visit(pj) for row i's positive candidates in ascending order, with the whole block, until visit returns
// false (visit must be block-uniform). Positives are compacted a round of kThreads references at a time into
// `chunk` (kThreads entries of shared memory), so any number of positives and any row length work.
template <typename T, typename Visit>
__device__ void for_each_positive(const TileView<T>& t, int64_t i, ScanTemp& temp, int64_t* chunk, Visit&& visit) {
  const int64_t li = t.lab.row(i);
  for (int64_t j0 = 0; j0 < t.cols; j0 += kThreads) {
    const int64_t j = j0 + threadIdx.x;
    const int64_t keep = j < t.cols && is_pos_candidate(li, t.lab.ref(j), t.self_pair(i, j));
    int64_t n_round;
    const int64_t r = IndexCompaction{temp}.rank(keep, n_round);
    if (keep) chunk[r] = j;
    __syncthreads();
    bool more = true;
    for (int64_t q = 0; q < n_round && more; ++q) more = visit(chunk[q]);
    __syncthreads();  // chunk is rewritten by the next round
    if (!more) return;
  }
}

// One block per anchor row (grid-strided). Compacts the row's negatives into negs = neg_idx[i] (kept for the write
// pass, with their number in neg_count[i]), then, positive by positive in order, counts the negatives that satisfy
// the rule; stops once the cap is reached. counts[i + 1] = min(count, cap).
template <typename T>
__global__ void count_triplets_kernel(TileView<T> t, TripletRule rule, int64_t* neg_idx, int64_t* neg_count,
                                      int64_t* counts) {
  __shared__ ScanTemp neg_temp, pos_temp;
  __shared__ typename BlockSum<int64_t>::Storage sum_storage;
  __shared__ int64_t pos_chunk[kThreads];
  const int64_t cap = rule.max_per_anchor;  // <= 0: no cap (the CPU's ++emitted == cap never fires)
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const T* row = t.row(i);
    int64_t* negs = neg_idx + i * t.cols;
    const int64_t n_neg = compact_negatives(t, i, neg_temp, negs);
    if (threadIdx.x == 0) neg_count[i] = n_neg;
    int64_t found = 0;
    if (n_neg > 0) {
      for_each_positive(t, i, pos_temp, pos_chunk, [&](int64_t pj) {
        const T v_ap = closeness_value(row[pj], rule.inverted);
        int64_t c = 0;
        for (int64_t q = threadIdx.x; q < n_neg; q += kThreads) {
          c += triplet_selected(rule, v_ap, closeness_value(row[negs[q]], rule.inverted));
        }
        found += BlockSum<int64_t>{sum_storage}(c);
        return !(cap > 0 && found >= cap);
      });
    }
    if (threadIdx.x == 0) counts[i + 1] = cap > 0 && found > cap ? cap : found;
  }
}

// One block per anchor row (grid-strided): the same walk as the count pass, writing each positive's qualifying
// negatives in ascending order (ordered block scan) at the row's offset until the row's count is written.
template <typename T>
__global__ void write_triplets_kernel(TileView<T> t, TripletRule rule, const int64_t* neg_idx,
                                      const int64_t* neg_count, const int64_t* offsets, int64_t* a, int64_t* p,
                                      int64_t* n) {
  __shared__ ScanTemp neg_temp, pos_temp;
  __shared__ int64_t pos_chunk[kThreads];
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    int64_t w = offsets[i];
    const int64_t end = offsets[i + 1];
    if (w == end) continue;
    const T* row = t.row(i);
    const int64_t gi = t.row_begin + i, n_neg = neg_count[i];
    const int64_t* negs = neg_idx + i * t.cols;
    for_each_positive(t, i, pos_temp, pos_chunk, [&](int64_t pj) {
      const T v_ap = closeness_value(row[pj], rule.inverted);
      for (int64_t q0 = 0; q0 < n_neg && w < end; q0 += kThreads) {
        const int64_t q = q0 + threadIdx.x;
        const int64_t keep = q < n_neg && triplet_selected(rule, v_ap, closeness_value(row[negs[q]], rule.inverted));
        int64_t total;
        const int64_t r = IndexCompaction{neg_temp}.rank(keep, total);
        if (keep && w + r < end) {
          a[w + r] = gi;
          p[w + r] = pj;
          n[w + r] = negs[q];
        }
        w += total;
      }
      return w < end;
    });
  }
}

}  // namespace

std::array<at::Tensor, 4> mine_pairs_tile(const Tile& tile, const PairRule& rule) {
  check_tile(tile);
  const at::cuda::CUDAGuard guard(tile.sim.device());
  const int64_t b = tile.sim.size(0);
  const auto long_opts = tile.sim.options().dtype(at::kLong);
  std::array<at::Tensor, 4> out;
  if (tile.sim.numel() == 0) {
    for (auto& o : out) o = at::empty({0}, long_opts);
    return out;
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_pairs_tile_cuda", [&] {
    using Extrema = RowExtrema<scalar_t>;
    const auto view = tile_view<scalar_t>(tile);
    // Pass 1: per-row counts (and extrema). Then offsets, the one sync, the allocation. Pass 2: ordered writes.
    at::Tensor extrema_buf;
    Extrema* extrema = nullptr;
    if (rule_needs_extrema(rule)) {
      extrema_buf = at::empty({b * int64_t(sizeof(Extrema))}, tile.sim.options().dtype(at::kByte));
      extrema = reinterpret_cast<Extrema*>(extrema_buf.data_ptr());
    }
    auto counts = at::zeros({2, b + 1}, long_opts);
    count_pairs_kernel<scalar_t><<<grid_for(b), kThreads, 0, stream>>>(view, rule, extrema, counts.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto [offsets, totals] = row_offsets(counts);
    for (int k = 0; k < 2; ++k) {
      out[2 * k] = at::empty({totals[k]}, long_opts);
      out[2 * k + 1] = at::empty({totals[k]}, long_opts);
    }
    if (totals[0] + totals[1] == 0) return;
    write_pairs_kernel<scalar_t><<<grid_for(b), kThreads, 0, stream>>>(
        view, rule, extrema, offsets.data_ptr<int64_t>(), out[0].data_ptr<int64_t>(), out[1].data_ptr<int64_t>(),
        out[2].data_ptr<int64_t>(), out[3].data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::array<at::Tensor, 3> mine_batch_hard_tile(const Tile& tile, bool inverted) {
  check_tile(tile);
  check_labels_given(tile, "mine_batch_hard_tile");
  const at::cuda::CUDAGuard guard(tile.sim.device());
  const int64_t b = tile.sim.size(0);
  const auto long_opts = tile.sim.options().dtype(at::kLong);
  if (tile.sim.numel() == 0) return {at::empty({0}, long_opts), at::empty({0}, long_opts), at::empty({0}, long_opts)};
  auto hardest = at::empty({2, b}, long_opts);
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_batch_hard_tile_cuda", [&] {
    batch_hard_kernel<scalar_t><<<grid_for(b), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
        tile_view<scalar_t>(tile), inverted, hardest.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  auto hard_pos = hardest[0], hard_neg = hardest[1];
  // Rows lacking a positive or a negative are dropped; nonzero keeps the anchors ascending.
  auto rows = at::nonzero(hard_pos.ge(0).logical_and_(hard_neg.ge(0))).squeeze(1);
  return {rows + tile.row_begin, hard_pos.index_select(0, rows), hard_neg.index_select(0, rows)};
}

std::array<at::Tensor, 3> mine_triplets_tile(const Tile& tile, const TripletRule& rule) {
  check_tile(tile);
  check_labels_given(tile, "mine_triplets_tile");
  const at::cuda::CUDAGuard guard(tile.sim.device());
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const auto long_opts = tile.sim.options().dtype(at::kLong);
  std::array<at::Tensor, 3> out;
  if (tile.sim.numel() == 0) {
    for (auto& o : out) o = at::empty({0}, long_opts);
    return out;
  }
  auto stream = at::cuda::getCurrentCUDAStream();
  // Scratch O(tile): each row's negatives, compacted by the count pass and reread by the write pass.
  auto neg_idx = at::empty({b, m}, long_opts);
  auto neg_count = at::empty({b}, long_opts);
  auto counts = at::zeros({1, b + 1}, long_opts);
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "mine_triplets_tile_cuda", [&] {
    const auto view = tile_view<scalar_t>(tile);
    count_triplets_kernel<scalar_t><<<grid_for(b), kThreads, 0, stream>>>(
        view, rule, neg_idx.data_ptr<int64_t>(), neg_count.data_ptr<int64_t>(), counts.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const auto [offsets, totals] = row_offsets(counts);
    for (auto& o : out) o = at::empty({totals[0]}, long_opts);
    if (totals[0] == 0) return;
    write_triplets_kernel<scalar_t><<<grid_for(b), kThreads, 0, stream>>>(
        view, rule, neg_idx.data_ptr<int64_t>(), neg_count.data_ptr<int64_t>(), offsets.data_ptr<int64_t>(),
        out[0].data_ptr<int64_t>(), out[1].data_ptr<int64_t>(), out[2].data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace cuda
}  // namespace slade
