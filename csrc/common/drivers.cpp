// Pieces shared by every driver in csrc/common/ (drivers.h): validated pair inputs and their tiles.
#include "slade/drivers.h"

#include "slade/common.h"

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace slade {

PairInputs prepare_pair_inputs(const at::Tensor& emb, const c10::optional<at::Tensor>& labels,
                               const c10::optional<at::Tensor>& ref_emb,
                               const c10::optional<at::Tensor>& ref_labels, bool labels_required,
                               const at::Tensor* basis, const char* labels_name, int64_t query_begin,
                               int64_t query_end) {
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
  auto embed = [&](const at::Tensor& x) { return basis ? project_normalize(x, *basis) : normalize_rows(x); };
  in.rows = embed(emb);
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
    in.refs = embed(*ref_emb);
    in.self = false;
  } else {
    in.refs = in.rows;
    in.ref_labels = in.labels;
    in.self = true;
    in.query_begin = query_begin;
    in.rows = in.rows.narrow(0, query_begin, end - query_begin);
    if (in.labels.defined()) in.labels = in.labels.narrow(0, query_begin, end - query_begin);
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

}  // namespace slade
