// Pieces shared by every driver in csrc/common/ (drivers.h): validated pair inputs and their tiles.
#include "slade/drivers.h"

#include "slade/common.h"

namespace slade {

PairInputs prepare_pair_inputs(const at::Tensor& emb, const c10::optional<at::Tensor>& labels,
                               const c10::optional<at::Tensor>& ref_emb,
                               const c10::optional<at::Tensor>& ref_labels, bool labels_required,
                               const at::Tensor* basis, const char* labels_name) {
  check_embeddings(emb, "emb");
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
  }
  return in;
}

Tile make_tile(const PairInputs& in, int64_t begin, const at::Tensor& sim) {
  Tile tile;
  tile.sim = sim;
  tile.row_begin = begin;
  if (in.labels.defined()) tile.row_labels = in.labels.narrow(0, begin, sim.size(0));
  tile.ref_labels = in.ref_labels;
  tile.exclude_self = in.self;
  return tile;
}

}  // namespace slade
