// Drivers of the mining family: the hard-pair and triplet miners (pytorch-metric-learning's rules) and
// confident-pair selection (docs/method.md), which is pair mining of the basis projections with the Confident rule.
// Epilogues: csrc/cpu/mining_cpu.cpp, csrc/cuda/mining_cuda.cu.
#include <torch/library.h>

#include "slade/common.h"
#include "slade/dispatch.h"
#include "slade/drivers.h"

namespace slade {
namespace {

using Opt = c10::optional<at::Tensor>;


void check_max_pairs_arg(int64_t max_pairs) {
  TORCH_CHECK_VALUE(max_pairs >= -1, "max_pairs must be >= 0, or -1 for no cap; got ", max_pairs);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> as_tuple(const std::array<at::Tensor, 4>& a) {
  return {a[0], a[1], a[2], a[3]};
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> as_tuple(const std::array<at::Tensor, 3>& a) {
  return {a[0], a[1], a[2]};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mine_multi_similarity(
    const at::Tensor& emb, const at::Tensor& labels, const Opt& ref_emb, const Opt& ref_labels, double epsilon,
    c10::string_view distance, int64_t query_begin, int64_t query_end, int64_t max_pairs) {
  check_finite_scalar(epsilon, "epsilon");
  check_max_pairs_arg(max_pairs);
  const auto dist = parse_distance(std::string(distance));
  PairRule rule;
  rule.kind = PairRuleKind::MultiSimilarity;
  rule.epsilon = epsilon;  // v - eps < max_neg on closeness is v + eps > min_neg on the distance
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true, nullptr, "labels",
                                query_begin, query_end, dist);
  auto epilogue = [&](const Tile& t) { return SLADE_TILE_DISPATCH(mine_pairs_tile, t, rule); };
  return as_tuple(mine_all_tiles<4>(in, "mine_multi_similarity", epilogue, max_pairs));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mine_pair_margin(
    const at::Tensor& emb, const at::Tensor& labels, const Opt& ref_emb, const Opt& ref_labels, double pos_margin,
    double neg_margin, c10::string_view distance, int64_t query_begin, int64_t query_end, int64_t max_pairs) {
  check_finite_scalar(pos_margin, "pos_margin");
  check_max_pairs_arg(max_pairs);
  check_finite_scalar(neg_margin, "neg_margin");
  const auto dist = parse_distance(std::string(distance));
  PairRule rule;
  rule.kind = PairRuleKind::PairMargin;
  rule.pos_margin = as_closeness(pos_margin, dist);
  rule.neg_margin = as_closeness(neg_margin, dist);
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true, nullptr, "labels",
                                query_begin, query_end, dist);
  auto epilogue = [&](const Tile& t) { return SLADE_TILE_DISPATCH(mine_pairs_tile, t, rule); };
  return as_tuple(mine_all_tiles<4>(in, "mine_pair_margin", epilogue, max_pairs));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mine_batch_hard(const at::Tensor& emb, const at::Tensor& labels,
                                                               const Opt& ref_emb, const Opt& ref_labels,
                                                               c10::string_view distance, int64_t query_begin,
                                                               int64_t query_end) {
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true, nullptr, "labels",
                                query_begin, query_end, parse_distance(std::string(distance)));
  auto epilogue = [&](const Tile& t) { return SLADE_TILE_DISPATCH(mine_batch_hard_tile, t, /*inverted=*/true); };
  return as_tuple(mine_all_tiles<3>(in, "mine_batch_hard", epilogue));
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
                                                                   c10::string_view distance,
                                                                   int64_t query_begin, int64_t query_end,
                                                                   int64_t max_pairs) {
  check_finite_scalar(margin, "margin");
  check_max_pairs_arg(max_pairs);
  TORCH_CHECK_VALUE(max_triplets_per_anchor == -1 || max_triplets_per_anchor > 0,
                    "max_triplets_per_anchor must be positive or -1 (no cap), got ", max_triplets_per_anchor);
  const auto dist = parse_distance(std::string(distance));
  TripletRule rule;
  rule.type = parse_triplet_type(std::string(type_of_triplets));
  rule.margin = margin;  // v_ap - v_an on closeness is d_an - d_ap on the distance
  rule.max_per_anchor = max_triplets_per_anchor;
  auto in = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true, nullptr, "labels",
                                query_begin, query_end, dist);
  auto epilogue = [&](const Tile& t) { return SLADE_TILE_DISPATCH(mine_triplets_tile, t, rule); };
  return as_tuple(mine_all_tiles<3>(in, "mine_triplet_margin", epilogue, max_pairs));
}

// ---- confident-pair selection (docs/method.md): basis projection, similarity tiles and thresholds in one pass ------

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_confident_pairs(
    const at::Tensor& emb, const at::Tensor& basis, double t_pos, double t_neg,
    const c10::optional<at::Tensor>& pseudo_labels, c10::string_view mode, int64_t query_begin, int64_t query_end,
    int64_t max_pairs) {
  check_finite_scalar(t_pos, "t_pos");
  check_max_pairs_arg(max_pairs);
  check_finite_scalar(t_neg, "t_neg");
  PairRule rule;
  rule.kind = PairRuleKind::Confident;
  rule.t_pos = t_pos;
  rule.t_neg = t_neg;
  if (mode == "agree") {
    rule.agree = true;
    TORCH_CHECK_VALUE(pseudo_labels.has_value(), "mode=\"agree\" needs pseudo_labels");
  } else {
    TORCH_CHECK_VALUE(mode == "literal", "mode must be \"literal\" or \"agree\", got \"", std::string(mode), "\"");
  }
  auto in = prepare_pair_inputs(emb, pseudo_labels, c10::nullopt, c10::nullopt, /*labels_required=*/false, &basis,
                                "pseudo_labels", query_begin, query_end);
  // While mu+ <= mu- the two threshold sets overlap: docs/method.md selects nothing then.
  if (t_pos <= t_neg) {
    return {in.rows.new_empty({0}, at::kLong), in.rows.new_empty({0}, at::kLong), in.rows.new_empty({0}, at::kLong),
            in.rows.new_empty({0}, at::kLong)};
  }
  auto epilogue = [&](const Tile& t) { return SLADE_TILE_DISPATCH(mine_pairs_tile, t, rule); };
  auto out = mine_all_tiles<4>(in, "select_confident_pairs", epilogue, max_pairs);
  return {out[0], out[1], out[2], out[3]};
}

// The thresholds are read here, when the op runs (a CUDA tensor's with a sync), so that a traced caller never reads
// them itself.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_confident_pairs_tensor_thresholds(
    const at::Tensor& emb, const at::Tensor& basis, const at::Tensor& t_pos, const at::Tensor& t_neg,
    const c10::optional<at::Tensor>& pseudo_labels, c10::string_view mode, int64_t query_begin, int64_t query_end,
    int64_t max_pairs) {
  auto number = [](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.numel() == 1, name, " must hold one number, got shape ", t.sizes());
    TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()), name, " must be a floating tensor, got ", t.scalar_type());
    return t.item<double>();
  };
  return select_confident_pairs(emb, basis, number(t_pos, "t_pos"), number(t_neg, "t_neg"), pseudo_labels, mode,
                                query_begin, query_end, max_pairs);
}

}  // namespace

TORCH_LIBRARY_IMPL(slade, CPU, m) {
  m.impl("mine_multi_similarity", &mine_multi_similarity);
  m.impl("mine_pair_margin", &mine_pair_margin);
  m.impl("mine_batch_hard", &mine_batch_hard);
  m.impl("mine_triplet_margin", &mine_triplet_margin);
  m.impl("select_confident_pairs", &select_confident_pairs);
  m.impl("select_confident_pairs_tensor_thresholds", &select_confident_pairs_tensor_thresholds);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(slade, CUDA, m) {
  m.impl("mine_multi_similarity", &mine_multi_similarity);
  m.impl("mine_pair_margin", &mine_pair_margin);
  m.impl("mine_batch_hard", &mine_batch_hard);
  m.impl("mine_triplet_margin", &mine_triplet_margin);
  m.impl("select_confident_pairs", &select_confident_pairs);
  m.impl("select_confident_pairs_tensor_thresholds", &select_confident_pairs_tensor_thresholds);
}
#endif

}  // namespace slade
