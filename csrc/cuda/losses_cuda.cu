// CUDA epilogues of the fused losses: same contract as csrc/cpu/losses_cpu.cpp (slade/loss_tiles.h), the per-pair
// math is the shared slade/loss_rules.h. One block per tile row for the row accumulators; the backward weights are
// written element-wise (all pairs) or scattered from the pair lists into a fresh tile.
#include <ATen/Dispatch.h>

#include "epilogue_utils.cuh"
#include "slade/loss_tiles.h"

namespace slade {
namespace cuda {
namespace {

using detail::check_tile;
using detail::grid_for;
using detail::kThreads;
using detail::tile_view;
using detail::TileView;

// The CSR pair lists on the device (null pointers: all pairs from the labels).
struct ListView {
  const int64_t *pos_ptr, *pos_cols, *neg_ptr, *neg_cols;
};

ListView list_view(const PairLists& l) {
  if (!l.defined()) return {nullptr, nullptr, nullptr, nullptr};
  return {l.pos_ptr.data_ptr<int64_t>(), l.pos_cols.data_ptr<int64_t>(), l.neg_ptr.data_ptr<int64_t>(),
          l.neg_cols.data_ptr<int64_t>()};
}

// Thread's share of row i's pairs: fn(j, is_pos), strided over the block.
template <typename T, typename F>
__device__ void visit_row_pairs(const TileView<T>& t, const ListView& l, int64_t i, F&& fn) {
  const int64_t gi = t.row_begin + i;
  if (l.pos_ptr) {
    for (int64_t k = l.pos_ptr[gi] + threadIdx.x; k < l.pos_ptr[gi + 1]; k += blockDim.x) fn(l.pos_cols[k], true);
    for (int64_t k = l.neg_ptr[gi] + threadIdx.x; k < l.neg_ptr[gi + 1]; k += blockDim.x) fn(l.neg_cols[k], false);
    return;
  }
  const int64_t li = t.lab.row(i);
  for (int64_t j = threadIdx.x; j < t.cols; j += blockDim.x) {
    if (t.lab.ref(j) != li) {
      fn(j, false);
    } else if (!t.self_pair(i, j)) {
      fn(j, true);
    }
  }
}

// Four per-row numbers reduced together: sums (+) or, for the multi-similarity shift, maxima of the first two.
struct Quad {
  double v[4];
};
struct QuadSum {
  __device__ Quad operator()(const Quad& a, const Quad& b) const {
    return {{a.v[0] + b.v[0], a.v[1] + b.v[1], a.v[2] + b.v[2], a.v[3] + b.v[3]}};
  }
};
struct QuadMaxSum {  // max of v[0], v[1]; sum of v[2], v[3]
  __device__ Quad operator()(const Quad& a, const Quad& b) const {
    return {{fmax(a.v[0], b.v[0]), fmax(a.v[1], b.v[1]), a.v[2] + b.v[2], a.v[3] + b.v[3]}};
  }
};

template <typename T>
__global__ void loss_rows_kernel(TileView<T> t, ListView l, LossRule rule, double* out) {
  using Reduce = cub::BlockReduce<Quad, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ Quad row_max;
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const T* row = t.row(i);
    double* o = out + (t.row_begin + i) * kLossRowState;
    Quad acc{{0.0, 0.0, 0.0, 0.0}};
    if (rule.kind == LossKind::MultiSimilarity) {
      // Pass 1: the shift M = max(0, max term) and the pair counts of each side.
      visit_row_pairs(t, l, i, [&](int64_t j, bool pos) {
        const int k = pos ? 0 : 1;
        acc.v[k] = fmax(acc.v[k], double(loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos)));
        acc.v[k + 2] += 1.0;
      });
      const Quad total = Reduce(temp).Reduce(acc, QuadMaxSum{});
      if (threadIdx.x == 0) row_max = total;
      __syncthreads();
      const T shift[2] = {T(row_max.v[0]), T(row_max.v[1])};
      // Pass 2: sum exp(term - M) of each side.
      Quad sums{{0.0, 0.0, 0.0, 0.0}};
      visit_row_pairs(t, l, i, [&](int64_t j, bool pos) {
        const int k = pos ? 0 : 1;
        sums.v[k] += double(loss_exp(loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos) - shift[k]));
      });
      const Quad s = Reduce(temp).Reduce(sums, QuadSum{});
      if (threadIdx.x == 0) {
        for (int k = 0; k < 2; ++k) o[k] = row_max.v[k] + log(exp(-row_max.v[k]) + s.v[k]);
        o[2] = row_max.v[2];
        o[3] = row_max.v[3];
      }
    } else {
      visit_row_pairs(t, l, i, [&](int64_t j, bool pos) {
        const T x = loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos);
        if (x > T(0)) {
          acc.v[pos ? 0 : 1] += double(x);
          acc.v[pos ? 2 : 3] += 1.0;
        }
      });
      const Quad s = Reduce(temp).Reduce(acc, QuadSum{});
      if (threadIdx.x == 0) {
        for (int k = 0; k < 4; ++k) o[k] = s.v[k];
      }
    }
    __syncthreads();  // temp storage and row_max are reused by the next row
  }
}

// d(loss)/d(s) of a pair from its row's state (grad_pos, grad_neg, pos_acc, neg_acc).
template <typename T>
__device__ T pair_weight(const LossRule& rule, const double* st, T s, bool pos) {
  const int k = pos ? 0 : 1;
  const T grad = T(st[k]);
  return grad == T(0) ? T(0) : grad * loss_pair_weight(rule, s, pos, T(st[k + 2]));
}

// All pairs: every element is overwritten in place by its weight (0 for a skipped self-pair).
template <typename T>
__global__ void loss_weights_all_kernel(TileView<T> t, LossRule rule, const double* state) {
  const int64_t numel = t.rows * t.cols;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < numel; e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    const double* st = state + (t.row_begin + i) * kLossRowState;
    const bool same = t.lab.row(i) == t.lab.ref(j);
    t.sim[e] = (same && t.self_pair(i, j)) ? T(0) : pair_weight(rule, st, t.sim[e], same);
  }
}

// Pair lists: each listed pair adds its weight to `out` (zeroed; duplicates accumulate).
template <typename T>
__global__ void loss_weights_list_kernel(TileView<T> t, ListView l, LossRule rule, const double* state, T* out) {
  for (int64_t i = blockIdx.x; i < t.rows; i += gridDim.x) {
    const double* st = state + (t.row_begin + i) * kLossRowState;
    const T* row = t.row(i);
    visit_row_pairs(t, l, i, [&](int64_t j, bool pos) {
      atomicAdd(out + i * t.cols + j, pair_weight(rule, st, row[j], pos));
    });
  }
}

void check_state(const Tile& tile, const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.device() == tile.sim.device() && t.scalar_type() == at::kDouble && t.is_contiguous() &&
                  t.dim() == 2 && t.size(1) == kLossRowState,
              name, ": expected a contiguous [N, 4] float64 tensor on ", tile.sim.device());
}

}  // namespace

void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out) {
  check_tile(tile);
  check_state(tile, rows_out, "loss_rows_tile");
  if (tile.sim.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(tile.sim.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "loss_rows_tile_cuda", [&] {
    loss_rows_kernel<scalar_t><<<grid_for(tile.sim.size(0)), kThreads, 0, stream>>>(
        tile_view<scalar_t>(tile), list_view(lists), rule, rows_out.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void loss_weights_tile(Tile& tile, const PairLists& lists, const LossRule& rule, const at::Tensor& state) {
  check_tile(tile);
  check_state(tile, state, "loss_weights_tile");
  if (tile.sim.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(tile.sim.device());
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "loss_weights_tile_cuda", [&] {
    if (!lists.defined()) {
      loss_weights_all_kernel<scalar_t><<<grid_for((tile.sim.numel() + kThreads - 1) / kThreads), kThreads, 0,
                                          stream>>>(tile_view<scalar_t>(tile), rule, state.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      return;
    }
    auto weights = at::zeros_like(tile.sim);
    loss_weights_list_kernel<scalar_t><<<grid_for(tile.sim.size(0)), kThreads, 0, stream>>>(
        tile_view<scalar_t>(tile), list_view(lists), rule, state.data_ptr<double>(), weights.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    tile.sim = weights;
  });
}

}  // namespace cuda
}  // namespace slade
