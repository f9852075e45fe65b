// Pieces shared by the op drivers in csrc/common/: validated mining inputs and the collection of tile outputs.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <array>
#include <vector>

#include "slade/common.h"
#include "slade/tiles.h"

namespace slade {

// Validated query rows and references (L2-normalised unless the distance says otherwise, in the compute dtype) with
// their int64 labels and the distance their tiles hold (for_each_pair_tile).
// ref_emb = None means "the set against itself": the references are all rows of emb, the queries its rows
// [query_begin, query_begin + rows.size(0)) (all of them by default; a slice is one rank's share of a global batch,
// slade_ext.distributed), and the self-pairs (i, query_begin + i) are excluded. rows is then a view of refs.
// For an L2 distance in torch.cdist's matrix-product form, padded_refs is cdist_padded_refs of the references and
// refs (with rows, against itself) a view of its first d columns: one copy of the references, not two.
struct PairInputs {
  at::Tensor rows, refs, labels, ref_labels;
  at::Tensor padded_refs;
  bool self = true;
  int64_t query_begin = 0;
  Distance distance;
};
// labels may be undefined when `labels_required` is false (selection without pseudo labels). With a basis, rows
// are the normalised basis projections instead of the embeddings (and the distance is the cosine). labels_name
// names the argument in error messages. query_begin / query_end (-1: the last row) choose the query rows; a range
// other than all rows needs ref_emb = None. for_tiles = false: the caller makes no tiles (a backward from what its
// forward kept), so no torch.cdist padding is built.
PairInputs prepare_pair_inputs(const at::Tensor& emb, const c10::optional<at::Tensor>& labels,
                               const c10::optional<at::Tensor>& ref_emb,
                               const c10::optional<at::Tensor>& ref_labels, bool labels_required,
                               const at::Tensor* basis = nullptr, const char* labels_name = "labels",
                               int64_t query_begin = 0, int64_t query_end = -1, const Distance& distance = {},
                               bool for_tiles = true);
// Validates a query range against n rows (query_end -1 = n) and returns its end.
int64_t check_query_range(int64_t query_begin, int64_t query_end, int64_t n, bool has_ref_emb);

// Calls fn(row_begin, tile) for the closeness tiles of `in` (closeness_tile, one block of query rows at a time), each
// of at most `max_tile_elems` elements (-1: the device's tile_budget).
void for_each_pair_tile(const PairInputs& in, const std::function<void(int64_t, const at::Tensor&)>& fn,
                        int64_t max_tile_elems = -1);

// The tile of query rows [begin, begin + sim.size(0)) with its labels; its row_begin indexes emb (begin +
// query_begin), so outputs and the self-pair test use emb's row numbers.
Tile make_tile(const PairInputs& in, int64_t begin, const at::Tensor& sim);

// An uninitialised int64 tensor of n elements for an op's indices. On CPU (Linux), one of a few MiB or more asks the
// kernel for transparent huge pages before it is first written: on unclustered embeddings the miners write ~N * M
// pairs (263 MB at N = 4096), and faulting in fresh 4 KiB pages took ~2.5x as long as the writes themselves
// (benchmarks/RESULTS.md, "Miner outputs written once"). PyTorch does this for all its allocations under
// THP_MEM_ALLOC_ENABLE=1; this does it for our outputs only.
at::Tensor empty_indices(int64_t n, const at::Device& device);

// The op's outputs from its tiles' (TileOutputs) in row order. Eager tiles alone are concatenated position by
// position (a single one returned as it is: copying a large output costs as much as writing it); with a deferred
// tile every output is allocated once at its final length, the eager tiles copied into place and the deferred ones
// written there. Empty outputs are on `device` when there are no tiles.
template <size_t K>
std::array<at::Tensor, K> collect_tiles(const std::vector<TileOutputs<K>>& parts, const at::Device& device) {
  std::array<at::Tensor, K> out;
  bool any_deferred = false;
  for (const auto& p : parts) any_deferred |= p.deferred();
  for (size_t k = 0; k < K; ++k) {
    int64_t n = 0;
    for (const auto& p : parts) n += p.count(k);
    if (!any_deferred && parts.size() == 1) {
      out[k] = parts[0].tensors[k];
      continue;
    }
    out[k] = empty_indices(n, device);
    if (any_deferred || n == 0) continue;
    std::vector<at::Tensor> pieces;
    pieces.reserve(parts.size());
    for (const auto& p : parts) pieces.push_back(p.tensors[k]);
    at::cat_out(out[k], pieces);
  }
  if (!any_deferred) return out;
  std::array<int64_t, K> offset{};
  for (const auto& p : parts) {
    std::array<int64_t*, K> at_offset;
    for (size_t k = 0; k < K; ++k) {
      at_offset[k] = out[k].template data_ptr<int64_t>() + offset[k];
      if (!p.deferred() && p.count(k) > 0) out[k].narrow(0, offset[k], p.count(k)).copy_(p.tensors[k]);
    }
    if (p.deferred()) p.write(at_offset);
    for (size_t k = 0; k < K; ++k) offset[k] += p.count(k);
  }
  return out;
}

// Bytes of host memory an op's outputs may take: the memory available when it starts (Linux: MemAvailable, within
// a cgroup v2 limit), or SLADE_EXT_MAX_OUTPUT_BYTES when that is set and smaller; -1 when neither is known.
int64_t host_output_budget();

// Stops `op` with torch.OutOfMemoryError, before the memory is taken, once what its first `tiles_done` of `n_tiles`
// tiles hold (`held_bytes`: their own outputs, or what writes them later) plus the final outputs collected from them
// (`collected_bytes`; 0 when those are one tile's own outputs) would exceed `budget` (host_output_budget; -1: no
// check).
void check_output_budget(const char* op, int64_t held_bytes, int64_t collected_bytes, int64_t tiles_done,
                         int64_t n_tiles, int64_t budget);

// Stops `op` with a ValueError naming max_pairs once its first `tiles_done` of `n_tiles` tiles have selected more
// than `max_pairs` pairs or triplets (`what`; -1: no cap).
void check_max_pairs(const char* op, const char* what, int64_t selected, int64_t tiles_done, int64_t n_tiles,
                     int64_t max_pairs);

// Runs a mining epilogue (returning TileOutputs<K> or its eager std::array) over all tiles of `in` and collects the
// results in row order. The outputs are checked after every tile against max_pairs (pairs of both sides, or
// triplets) and, on the CPU, against the memory available: thresholds that select nearly every pair of a large set
// would otherwise fill the machine (N = 30,000: 14 GB a pair list) and end in the kernel's OOM killer.
template <size_t K, typename Epilogue>
std::array<at::Tensor, K> mine_all_tiles(const PairInputs& in, const char* op, Epilogue&& epilogue,
                                         int64_t max_pairs = -1) {
  static_assert(K == 3 || K == 4, "triplets (a, p, n) or pairs (a1, p, a2, n)");
  std::vector<TileOutputs<K>> parts;
  const int64_t budget = in.rows.is_cpu() ? host_output_budget() : -1;
  const int64_t per_tile = rows_per_tile(in.rows.size(0), in.refs.size(0), tile_budget(in.rows));
  const int64_t n_tiles = (in.rows.size(0) + per_tile - 1) / per_tile;
  int64_t held = 0, output = 0, selected = 0;
  bool any_deferred = false;
  for_each_pair_tile(in, [&](int64_t begin, const at::Tensor& sim) {
    parts.emplace_back(epilogue(make_tile(in, begin, sim)));
    const auto& part = parts.back();
    int64_t bytes = 0;
    for (size_t k = 0; k < K; ++k) bytes += part.count(k) * int64_t(sizeof(int64_t));
    output += bytes;
    held += part.deferred() ? part.held_bytes : bytes;
    any_deferred |= part.deferred();
    selected += K == 4 ? part.count(0) + part.count(K - 2) : part.count(0);
    check_max_pairs(op, K == 4 ? "pairs" : "triplets", selected, int64_t(parts.size()), n_tiles, max_pairs);
    check_output_budget(op, held, n_tiles > 1 || any_deferred ? output : 0, int64_t(parts.size()), n_tiles, budget);
  });
  return collect_tiles<K>(parts, in.rows.device());
}

}  // namespace slade
