// Driver of confident-pair selection (METHOD.md): basis projection, similarity tiles and thresholds in one pass.
#include <torch/library.h>

#include "slade/common.h"
#include "slade/drivers.h"

namespace slade {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> select_confident_pairs(
    const at::Tensor& emb, const at::Tensor& basis, double t_pos, double t_neg,
    const c10::optional<at::Tensor>& pseudo_labels, c10::string_view mode) {
  check_finite_scalar(t_pos, "t_pos");
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
                                "pseudo_labels");
  // While mu+ <= mu- the two threshold sets overlap: METHOD.md selects nothing then.
  if (t_pos <= t_neg) {
    return {in.rows.new_empty({0}, at::kLong), in.rows.new_empty({0}, at::kLong), in.rows.new_empty({0}, at::kLong),
            in.rows.new_empty({0}, at::kLong)};
  }
  auto out = mine_all_tiles<4>(in, [&](const Tile& t) { return mine_pairs_tile(t, rule); });
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(slade, CPU, m) { m.impl("select_confident_pairs", &select_confident_pairs); }
#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(slade, CUDA, m) { m.impl("select_confident_pairs", &select_confident_pairs); }
#endif

}  // namespace slade
