// Pieces shared by the CUDA tile epilogues (csrc/cuda/*.cu): launch shape, labels on the device,
// the per-row count -> offsets step, and the block-wide ordered compaction that keeps CPU and CUDA output order equal.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <utility>
#include <vector>

#include "slade/tiles.h"

namespace slade {
namespace cuda {
namespace detail {

constexpr int kThreads = 256;  // threads per block of every epilogue kernel

// Kernels stride over their work items (rows, or elements), so any tile fits the grid limits.
constexpr int64_t kMaxBlocks = int64_t(1) << 20;
inline unsigned grid_for(int64_t items) { return static_cast<unsigned>(std::min(items, kMaxBlocks)); }

// Label of row i / reference j on the device, or -1 when the op has no labels (as the CPU's LabelView).
struct DeviceLabels {
  const int64_t* rows;
  const int64_t* refs;
  __device__ int64_t row(int64_t i) const { return rows ? rows[i] : -1; }
  __device__ int64_t ref(int64_t j) const { return refs ? refs[j] : -1; }
};

// A tile as kernels see it: row-major [rows, cols] values, global row offset and labels.
template <typename T>
struct TileView {
  T* sim;
  int64_t rows, cols, row_begin;
  bool exclude_self;
  DeviceLabels lab;
  __device__ T* row(int64_t i) const { return sim + i * cols; }
  __device__ bool self_pair(int64_t i, int64_t j) const { return exclude_self && row_begin + i == j; }
};

template <typename T>
TileView<T> tile_view(const Tile& t) {
  return {t.sim.data_ptr<T>(),
          t.sim.size(0),
          t.sim.size(1),
          t.row_begin,
          t.exclude_self,
          {t.row_labels.defined() ? t.row_labels.data_ptr<int64_t>() : nullptr,
           t.ref_labels.defined() ? t.ref_labels.data_ptr<int64_t>() : nullptr}};
}

// Checks shared by every epilogue: a contiguous tile, labels (where given) on its device and contiguous.
inline void check_tile(const Tile& t) {
  TORCH_CHECK(t.sim.is_cuda() && t.sim.is_contiguous() && t.sim.dim() == 2, "CUDA epilogue: bad similarity tile");
  for (const at::Tensor* lab : {&t.row_labels, &t.ref_labels}) {
    TORCH_CHECK(!lab->defined() || (lab->device() == t.sim.device() && lab->is_contiguous() &&
                                    lab->scalar_type() == at::kLong),
                "CUDA epilogue: labels must be contiguous int64 on ", t.sim.device());
  }
}

// counts is [k, rows + 1] int64 with column 0 zero and column i + 1 the count of row i. Returns the row offsets
// (cumulative sums: row i writes [offsets[:, i], offsets[:, i + 1])) and the k totals, read with the epilogue's one
// host synchronisation (the output size must be known to allocate it).
inline std::pair<at::Tensor, std::vector<int64_t>> row_offsets(const at::Tensor& counts) {
  auto offsets = at::cumsum(counts, /*dim=*/1);
  auto totals = offsets.select(1, counts.size(1) - 1).cpu().contiguous();
  return {offsets, std::vector<int64_t>(totals.data_ptr<int64_t>(), totals.data_ptr<int64_t>() + totals.numel())};
}

// Element-wise sum of a small aggregate, for cub block scans/reductions over several counters at once.
struct Plus {
  template <typename V>
  __device__ V operator()(const V& a, const V& b) const {
    return a + b;
  }
};

// Ordered block-wide compaction, one round of kThreads items: every thread passes whether its item is kept and gets
// the item's rank among the kept items of the round (in thread order) plus the round's total. V is a counter type
// (int, or an aggregate of counters with operator+). Ends with a barrier, so the temp storage is reusable.
template <typename V>
struct OrderedCompaction {
  using Scan = cub::BlockScan<V, kThreads>;
  typename Scan::TempStorage& temp;
  __device__ V rank(const V& keep, V& total) {
    V r;
    Scan(temp).ExclusiveScan(keep, r, V{}, Plus{}, total);
    __syncthreads();
    return r;
  }
};

// Block-wide sum of a counter, returned to every thread. Ends with a barrier, so it can be called again at once.
template <typename V>
struct BlockSum {
  using Reduce = cub::BlockReduce<V, kThreads>;
  struct Storage {
    typename Reduce::TempStorage temp;
    V result;
  };
  Storage& s;
  __device__ V operator()(const V& x) {
    const V total = Reduce(s.temp).Reduce(x, Plus{});
    if (threadIdx.x == 0) s.result = total;
    __syncthreads();
    const V out = s.result;
    __syncthreads();
    return out;
  }
};

}  // namespace detail
}  // namespace cuda
}  // namespace slade
