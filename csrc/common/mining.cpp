// Drivers of the mining ops (pytorch-metric-learning's rules) and their CPU/CUDA registration.
#include <torch/library.h>

#include "slade/common.h"
#include "slade/drivers.h"

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

namespace {

using Opt = c10::optional<at::Tensor>;

bool is_inverted(const std::string& distance) { return parse_distance(distance) == Distance::Cosine; }

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple(const std::array<at::Tensor, 4>& a) {
  return {a[0], a[1], a[2], a[3]};
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> as_tuple(const std::array<at::Tensor, 3>& a) {
  return {a[0], a[1], a[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mine_multi_similarity(
    const at::Tensor& emb, const at::Tensor& labels, const Opt& ref_emb, const Opt& ref_labels, double epsilon,
    c10::string_view distance) {
  check_finite_scalar(epsilon, "epsilon");
  PairRule rule;
  rule.kind = PairRuleKind::MultiSimilarity;
  rule.inverted = is_inverted(std::string(distance));
  rule.epsilon = epsilon;
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true);
  return as_tuple(mine_all_tiles<4>(in, [&](const Tile& t) { return mine_pairs_tile(t, rule); }));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mine_pair_margin(
    const at::Tensor& emb, const at::Tensor& labels, const Opt& ref_emb, const Opt& ref_labels, double pos_margin,
    double neg_margin, c10::string_view distance) {
  check_finite_scalar(pos_margin, "pos_margin");
  check_finite_scalar(neg_margin, "neg_margin");
  PairRule rule;
  rule.kind = PairRuleKind::PairMargin;
  rule.inverted = is_inverted(std::string(distance));
  rule.pos_margin = pos_margin;
  rule.neg_margin = neg_margin;
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true);
  return as_tuple(mine_all_tiles<4>(in, [&](const Tile& t) { return mine_pairs_tile(t, rule); }));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mine_batch_hard(const at::Tensor& emb, const at::Tensor& labels,
                                                               const Opt& ref_emb, const Opt& ref_labels,
                                                               c10::string_view distance) {
  parse_distance(std::string(distance));  // validates the name
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true);
  // The L2 distance of unit vectors, sqrt(2 - 2 s), decreases with the cosine similarity s, so the hardest
  // positive / negative is the same pair under either distance: compare similarities and skip a sqrt per pair.
  return as_tuple(mine_all_tiles<3>(in, [&](const Tile& t) { return mine_batch_hard_tile(t, /*inverted=*/true); }));
}

TripletType parse_triplet_type(const std::string& name) {
  if (name == "all") return TripletType::All;
  if (name == "hard") return TripletType::Hard;
  if (name == "semihard") return TripletType::SemiHard;
  if (name == "easy") return TripletType::Easy;
  TORCH_CHECK_VALUE(false, "type_of_triplets must be one of \"all\", \"hard\", \"semihard\", \"easy\"; got \"",
                    name, "\"");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mine_triplet_margin(const at::Tensor& emb, const at::Tensor& labels,
                                                                   const Opt& ref_emb, const Opt& ref_labels,
                                                                   double margin, c10::string_view type_of_triplets,
                                                                   int64_t max_triplets_per_anchor,
                                                                   c10::string_view distance) {
  check_finite_scalar(margin, "margin");
  TORCH_CHECK_VALUE(max_triplets_per_anchor == -1 || max_triplets_per_anchor > 0,
                    "max_triplets_per_anchor must be positive or -1 (no cap), got ", max_triplets_per_anchor);
  TripletRule rule;
  rule.type = parse_triplet_type(std::string(type_of_triplets));
  rule.inverted = is_inverted(std::string(distance));
  rule.margin = margin;
  rule.max_per_anchor = max_triplets_per_anchor;
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true);
  return as_tuple(mine_all_tiles<3>(in, [&](const Tile& t) { return mine_triplets_tile(t, rule); }));
}

}  // namespace

TORCH_LIBRARY_IMPL(slade, CPU, m) {
  m.impl("mine_multi_similarity", &mine_multi_similarity);
  m.impl("mine_pair_margin", &mine_pair_margin);
  m.impl("mine_batch_hard", &mine_batch_hard);
  m.impl("mine_triplet_margin", &mine_triplet_margin);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(slade, CUDA, m) {
  m.impl("mine_multi_similarity", &mine_multi_similarity);
  m.impl("mine_pair_margin", &mine_pair_margin);
  m.impl("mine_batch_hard", &mine_batch_hard);
  m.impl("mine_triplet_margin", &mine_triplet_margin);
}
#endif

}  // namespace slade
