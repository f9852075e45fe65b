// CUDA epilogues over one similarity tile: pair statistics, their gradient weights, and pair mining/selection.
// Same contract as csrc/cpu/pairs_cpu.cpp (the spec); the per-pair rules are the shared ones of slade/rules.h.
#include <ATen/Dispatch.h>

#include <climits>

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

// ---- pair statistics ------------------------------------------------------------------------------------------

// The accumulator's layout: (sum_pos, sumsq_pos, count_pos, sum_neg, sumsq_neg, count_neg).
struct Moments {
  double sum_pos, sumsq_pos, n_pos, sum_neg, sumsq_neg, n_neg;
  __device__ Moments operator+(const Moments& o) const {
    return {sum_pos + o.sum_pos, sumsq_pos + o.sumsq_pos, n_pos + o.n_pos,
            sum_neg + o.sum_neg, sumsq_neg + o.sumsq_neg, n_neg + o.n_neg};
  }
};
static_assert(sizeof(Moments) == 6 * sizeof(double), "Moments must match the [6] float64 accumulator");

constexpr int kStatsItems = 16;  // tile elements per thread of a statistics block
constexpr int64_t kStatsBlockElems = int64_t(kThreads) * kStatsItems;

// Block k sums the counted pairs among the flat tile elements [k, k + 1) * kStatsBlockElems into partial[k]. The
// partition depends only on the tile's shape and every reduction has a fixed order: results are bit-reproducible.
template <typename T>
__global__ void pair_stats_partial_kernel(TileView<T> t, Moments* partial) {
  __shared__ typename cub::BlockReduce<Moments, kThreads>::TempStorage temp;
  const int64_t numel = t.rows * t.cols;
  const int64_t first = int64_t(blockIdx.x) * kStatsBlockElems + threadIdx.x;
  Moments acc{};
  for (int k = 0; k < kStatsItems; ++k) {
    const int64_t e = first + int64_t(k) * kThreads;
    if (e >= numel) break;
    const int64_t i = e / t.cols, j = e - i * t.cols;
    const int64_t li = t.lab.row(i), lj = t.lab.ref(j);
    if (!stats_pair_counts(li, lj, t.self_pair(i, j))) continue;
    const double s = double(t.sim[e]);
    if (li == lj) {
      acc.sum_pos += s;
      acc.sumsq_pos += s * s;
      acc.n_pos += 1.0;
    } else {
      acc.sum_neg += s;
      acc.sumsq_neg += s * s;
      acc.n_neg += 1.0;
    }
  }
  const Moments total = cub::BlockReduce<Moments, kThreads>(temp).Reduce(acc, Plus{});
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// One block: acc += sum of the partials, each thread summing a fixed stride of them in order.
__global__ void pair_stats_finish_kernel(const Moments* partial, int64_t n_partial, Moments* acc) {
  __shared__ typename cub::BlockReduce<Moments, kThreads>::TempStorage temp;
  Moments sum{};
  for (int64_t k = threadIdx.x; k < n_partial; k += kThreads) sum = sum + partial[k];
  const Moments total = cub::BlockReduce<Moments, kThreads>(temp).Reduce(sum, Plus{});
  if (threadIdx.x == 0) *acc = *acc + total;
}

// ---- gradient weights of the statistics -----------------------------------------------------------------------

struct WeightCoef {
  double a_pos, b_pos, a_neg, b_neg;
};

template <typename T>
__global__ void pair_weights_kernel(TileView<T> t, WeightCoef c) {
  const int64_t numel = t.rows * t.cols;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t e = int64_t(blockIdx.x) * kThreads + threadIdx.x; e < numel; e += stride) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    const int64_t li = t.lab.row(i), lj = t.lab.ref(j);
    const double s = double(t.sim[e]);
    double w = 0.0;
    if (stats_pair_counts(li, lj, t.self_pair(i, j))) w = li == lj ? c.a_pos + c.b_pos * s : c.a_neg + c.b_neg * s;
    t.sim[e] = T(w);
  }
}

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

}  // namespace

void pair_stats_tile(const Tile& tile, at::Tensor& acc) {
  check_tile(tile);
  TORCH_CHECK(acc.device() == tile.sim.device() && acc.scalar_type() == at::kDouble && acc.is_contiguous() &&
                  acc.numel() == 6,
              "pair_stats_tile: acc must be a contiguous [6] float64 tensor on ", tile.sim.device());
  const at::cuda::CUDAGuard guard(tile.sim.device());
  const int64_t numel = tile.sim.numel();
  if (numel == 0) return;
  const int64_t n_partial = (numel + kStatsBlockElems - 1) / kStatsBlockElems;
  TORCH_CHECK(n_partial <= INT_MAX, "pair_stats_tile: tile too large (", numel, " elements)");
  auto partial = at::empty({n_partial * 6}, acc.options());
  auto* partial_ptr = reinterpret_cast<Moments*>(partial.data_ptr<double>());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "pair_stats_tile_cuda", [&] {
    pair_stats_partial_kernel<scalar_t>
        <<<static_cast<unsigned>(n_partial), kThreads, 0, stream>>>(tile_view<scalar_t>(tile), partial_ptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  pair_stats_finish_kernel<<<1, kThreads, 0, stream>>>(partial_ptr, n_partial,
                                                       reinterpret_cast<Moments*>(acc.data_ptr<double>()));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void pair_weights_tile(Tile& tile, const std::array<double, 4>& coef) {
  check_tile(tile);
  const at::cuda::CUDAGuard guard(tile.sim.device());
  const int64_t numel = tile.sim.numel();
  if (numel == 0) return;
  const WeightCoef c{coef[0], coef[1], coef[2], coef[3]};
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "pair_weights_tile_cuda", [&] {
    pair_weights_kernel<scalar_t><<<grid_for((numel + kThreads - 1) / kThreads), kThreads, 0,
                                    at::cuda::getCurrentCUDAStream()>>>(tile_view<scalar_t>(tile), c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

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

}  // namespace cuda
}  // namespace slade
