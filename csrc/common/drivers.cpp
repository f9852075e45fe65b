// Pieces shared by every driver in csrc/common/ (drivers.h): validated pair inputs and their tiles.
#include "slade/drivers.h"

#include "slade/common.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace slade {

PairInputs prepare_pair_inputs(const at::Tensor& emb, const c10::optional<at::Tensor>& labels,
                               const c10::optional<at::Tensor>& ref_emb,
                               const c10::optional<at::Tensor>& ref_labels, bool labels_required,
                               const at::Tensor* basis, const char* labels_name, int64_t query_begin,
                               int64_t query_end, const Distance& distance, bool for_tiles) {
  check_embeddings(emb, "emb");
  const int64_t end = check_query_range(query_begin, query_end, emb.size(0), ref_emb.has_value());
  const auto device = emb.device();
  PairInputs in;
  TORCH_CHECK_VALUE(!labels_required || labels.has_value(), labels_name, " are required");
  if (labels.has_value()) {
    check_labels(*labels, emb.size(0), device, labels_name);
    in.labels = labels_int64(*labels);
  }
  TORCH_CHECK_VALUE(ref_emb.has_value() || !ref_labels.has_value(), "ref_labels was given without ref_emb");
  if (basis != nullptr) check_basis(*basis, emb.size(1), device, "basis");
  TORCH_CHECK_VALUE(basis == nullptr || (distance.similarity && distance.normalize),
                    "a basis projection is compared by its cosine similarity only");
  in.distance = distance;
  const int64_t n_queries = ref_emb.has_value() ? emb.size(0) : end - query_begin;
  const int64_t m = ref_emb.has_value() ? ref_emb->size(0) : emb.size(0);
  const bool padded = for_tiles && !distance.similarity && cdist_uses_mm(n_queries, m);
  // The references of a padded distance are embedded into their padding (refs is a view of it).
  auto embed = [&](const at::Tensor& x, bool into_padding) {
    if (basis) return project_normalize(x, *basis);
    if (into_padding) {
      in.padded_refs = cdist_padded_refs(x, distance.normalize);
      return in.padded_refs.narrow(1, 0, x.size(1));
    }
    return distance.normalize ? normalize_rows(x) : x.to(compute_dtype(x)).contiguous();
  };
  in.rows = embed(emb, padded && !ref_emb.has_value());
  if (ref_emb.has_value()) {
    check_embeddings(*ref_emb, "ref_emb");
    check_same_device(*ref_emb, device, "ref_emb");
    TORCH_CHECK_VALUE(ref_emb->size(1) == emb.size(1), "ref_emb has d = ", ref_emb->size(1),
                      " but emb has d = ", emb.size(1));
    TORCH_CHECK_VALUE(!labels_required || ref_labels.has_value(), "ref_labels are required with ref_emb");
    if (ref_labels.has_value()) {
      check_labels(*ref_labels, ref_emb->size(0), device, "ref_labels");
      in.ref_labels = labels_int64(*ref_labels);
    }
    in.refs = embed(*ref_emb, padded);
    in.self = false;
  } else {
    in.refs = in.rows;
    in.ref_labels = in.labels;
    in.self = true;
    in.query_begin = query_begin;
    in.rows = in.rows.narrow(0, query_begin, n_queries);
    if (in.labels.defined()) in.labels = in.labels.narrow(0, query_begin, n_queries);
  }
  return in;
}

int64_t check_query_range(int64_t query_begin, int64_t query_end, int64_t n, bool has_ref_emb) {
  const int64_t end = query_end == -1 ? n : query_end;
  TORCH_CHECK_VALUE(0 <= query_begin && query_begin <= end && end <= n, "query_rows must satisfy 0 <= begin <= end <= ",
                    n, " (the rows of emb), got (", query_begin, ", ", query_end, ")");
  TORCH_CHECK_VALUE(!has_ref_emb || (query_begin == 0 && end == n),
                    "query_rows needs ref_emb=None: the queries are rows of emb compared with all of emb");
  return end;
}

void for_each_pair_tile(const PairInputs& in, const std::function<void(int64_t, const at::Tensor&)>& fn,
                        int64_t max_tile_elems) {
  for_each_closeness_tile(in.rows, in.refs, in.padded_refs, in.distance,
                          max_tile_elems > 0 ? max_tile_elems : tile_budget(in.rows), fn);
}

Tile make_tile(const PairInputs& in, int64_t begin, const at::Tensor& sim) {
  Tile tile;
  tile.sim = sim;
  tile.row_begin = in.query_begin + begin;
  if (in.labels.defined()) tile.row_labels = in.labels.narrow(0, begin, sim.size(0));
  tile.ref_labels = in.ref_labels;
  tile.exclude_self = in.self;
  return tile;
}

at::Tensor empty_indices(int64_t n, const at::Device& device) {
  auto out = at::empty({n}, at::TensorOptions().dtype(at::kLong).device(device));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHugePage = uintptr_t(2) << 20;
  const uintptr_t bytes = uintptr_t(n) * sizeof(int64_t);
  if (device.is_cpu() && bytes >= 2 * kHugePage) {
    // The whole huge pages inside the allocation; where THP is off the call fails and default pages remain.
    const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
    if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

namespace {

// The first number in `path` (a /proc or /sys file), or -1 when it cannot be read ("max" included).
int64_t read_number(const char* path, const std::string& key = "") {
  std::ifstream file(path);
  std::string word;
  while (file >> word) {
    if (!key.empty() && word != key) continue;
    if (!key.empty() && !(file >> word)) return -1;
    try {
      return std::stoll(word);
    } catch (const std::exception&) {
      return -1;
    }
  }
  return -1;
}

}  // namespace

int64_t host_output_budget() {
  int64_t budget = -1;
#if defined(__linux__)
  const int64_t available_kb = read_number("/proc/meminfo", "MemAvailable:");
  if (available_kb >= 0) budget = available_kb * 1024;
  const int64_t limit = read_number("/sys/fs/cgroup/memory.max"), used = read_number("/sys/fs/cgroup/memory.current");
  if (limit >= 0 && used >= 0 && (budget < 0 || limit - used < budget)) budget = std::max<int64_t>(limit - used, 0);
#endif
  if (const char* cap = std::getenv("SLADE_EXT_MAX_OUTPUT_BYTES")) {
    int64_t value = -1;
    try {
      value = std::stoll(cap);
    } catch (const std::exception&) {
    }
    TORCH_CHECK_VALUE(value >= 0, "SLADE_EXT_MAX_OUTPUT_BYTES must be a number of bytes >= 0, got \"", cap, "\"");
    if (budget < 0 || value < budget) budget = value;
  }
  return budget;
}

void check_max_pairs(const char* op, const char* what, int64_t selected, int64_t tiles_done, int64_t n_tiles,
                     int64_t max_pairs) {
  TORCH_CHECK_VALUE(max_pairs < 0 || selected <= max_pairs, op, ": the first ", tiles_done, " of ", n_tiles,
                    " row tiles already select ", selected, " ", what, ", more than max_pairs = ", max_pairs,
                    ". Stopped before collecting more: thresholds that select fewer pairs, fewer query rows per call "
                    "(query_rows) or a larger max_pairs.");
}

void check_output_budget(const char* op, int64_t held_bytes, int64_t collected_bytes, int64_t tiles_done,
                         int64_t n_tiles, int64_t budget) {
  const int64_t needed = held_bytes + collected_bytes;
  if (budget < 0 || needed <= budget) return;
  const double gib = double(int64_t(1) << 30);
  TORCH_CHECK_WITH(OutOfMemoryError, false, op, ": the selected indices of the first ", tiles_done, " of ", n_tiles,
                   " row tiles already need ", needed / gib, " GiB, more than the ", budget / gib,
                   " GiB of memory available (SLADE_EXT_MAX_OUTPUT_BYTES can lower the limit). Stopped before "
                   "taking it: thresholds that select fewer pairs, or fewer query rows per call (query_rows), "
                   "make the output fit.");
}

}  // namespace slade
