// CUDA epilogues of the basis family (csrc/common/basis.cpp): pair statistics and their gradient weights.
// Same contract as csrc/cpu/basis_cpu.cpp (the spec); the per-pair rules are the shared ones of slade/rules.h.
#include <ATen/Dispatch.h>

#include <climits>

#include "epilogue_utils.cuh"
#include "slade/rules.h"
#include "slade/tiles.h"

namespace slade {
namespace cuda {
namespace {

using detail::check_tile;
using detail::grid_for;
using detail::kThreads;
using detail::Plus;
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

}  // namespace cuda
}  // namespace slade
