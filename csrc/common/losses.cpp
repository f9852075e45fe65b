// Drivers of the fused losses (loss_rules.h): per-row accumulators computed tile by tile, and a backward that
// recomputes each tile, turns it into per-pair weights G and accumulates G @ refs and G^T @ rows. Neither direction
// holds more than one tile of the N x M similarity matrix. Epilogues: csrc/cpu/losses_cpu.cpp,
// csrc/cuda/losses_cuda.cu. The backward ops take an output_mask (emb, ref_emb), as ATen's backward ops do: a
// gradient that is not asked for is not computed and comes back as an empty [0] tensor.
#include <torch/library.h>

#include "slade/common.h"
#include "slade/dispatch.h"
#include "slade/drivers.h"
#include "slade/loss_tiles.h"

namespace slade {
namespace {

using Opt = c10::optional<at::Tensor>;

// Validated pair lists (CSR over the rows of emb, columns index the reference set), or undefined for all pairs.
PairLists check_pair_lists(const Opt& pos_ptr, const Opt& pos_cols, const Opt& neg_ptr, const Opt& neg_cols,
                           int64_t n, int64_t m, const at::Device& device) {
  const int given = pos_ptr.has_value() + pos_cols.has_value() + neg_ptr.has_value() + neg_cols.has_value();
  TORCH_CHECK_VALUE(given == 0 || given == 4, "pos_ptr, pos_cols, neg_ptr and neg_cols must be given together");
  PairLists lists;
  if (given == 0) return lists;
  auto check = [&](const at::Tensor& t, const char* name) {
    TORCH_CHECK_VALUE(t.dim() == 1, name, " must be 1-D, got shape ", t.sizes());
    TORCH_CHECK_TYPE(t.scalar_type() == at::kLong, name, " must be int64, got ", t.scalar_type());
    check_same_device(t, device, name);
    return t.contiguous();
  };
  lists.pos_ptr = check(*pos_ptr, "pos_ptr");
  lists.pos_cols = check(*pos_cols, "pos_cols");
  lists.neg_ptr = check(*neg_ptr, "neg_ptr");
  lists.neg_cols = check(*neg_cols, "neg_cols");
  for (auto [ptr, cols, name] : {std::make_tuple(lists.pos_ptr, lists.pos_cols, "pos_ptr"),
                                 std::make_tuple(lists.neg_ptr, lists.neg_cols, "neg_ptr")}) {
    TORCH_CHECK_VALUE(ptr.numel() == n + 1, name, " must have N + 1 = ", n + 1, " entries, got ", ptr.numel());
    TORCH_CHECK_VALUE(ptr[0].item<int64_t>() == 0 && ptr[n].item<int64_t>() == cols.numel(), name,
                      " must start at 0 and end at the number of columns listed (", cols.numel(), ")");
    TORCH_CHECK_VALUE(n == 0 || (ptr.diff() >= 0).all().item<bool>(), name, " must be non-decreasing");
    if (cols.numel() > 0) {
      TORCH_CHECK_VALUE(cols.min().item<int64_t>() >= 0 && cols.max().item<int64_t>() < m,
                        "pair columns must index the reference set [0, ", m, ")");
    }
  }
  return lists;
}

struct LossInputs {
  PairInputs pairs;
  PairLists lists;
};

LossInputs prepare_loss_inputs(const at::Tensor& emb, const Opt& labels, const Opt& ref_emb, const Opt& ref_labels,
                               const Opt& pos_ptr, const Opt& pos_cols, const Opt& neg_ptr, const Opt& neg_cols,
                               int64_t query_begin, int64_t query_end, c10::string_view distance,
                               bool for_tiles = true) {
  LossInputs in;
  const bool lists_given = pos_ptr.has_value() || pos_cols.has_value() || neg_ptr.has_value() || neg_cols.has_value();
  TORCH_CHECK_VALUE(lists_given || labels.has_value(), "labels are required when no pair lists are given");
  TORCH_CHECK_VALUE(!lists_given || (query_begin == 0 && (query_end == -1 || query_end == emb.size(0))),
                    "query_rows cannot be combined with pair lists (the lists choose each row's pairs)");
  // Labels only matter for the all-pairs path; pair lists are used as given.
  in.pairs = prepare_pair_inputs(emb, lists_given ? c10::nullopt : labels, ref_emb,
                                 lists_given ? c10::nullopt : ref_labels, /*labels_required=*/!lists_given,
                                 /*basis=*/nullptr, "labels", query_begin, query_end,
                                 parse_distance(std::string(distance)), for_tiles);
  in.lists = check_pair_lists(pos_ptr, pos_cols, neg_ptr, neg_cols, in.pairs.rows.size(0), in.pairs.refs.size(0),
                              emb.device());
  return in;
}

// An L2 distance's backward keeps the tile's reciprocal beside the tile, so its tiles are a quarter of the budget
// (benchmarks/RESULTS.md, "L2 backward in quarter tiles": CrossBatchMemory(ContrastiveLoss) peaks at about half).
// Its forward takes the same tiles: with the references padded once, a full-budget tile alone would set the peak
// ("One padded copy of the references").
bool needs_inverse(const Distance& distance) { return !distance.similarity && distance.power == 1; }
int64_t loss_tile_elems(const PairInputs& in) {
  return tile_budget(in.rows) / (needs_inverse(in.distance) ? 4 : 1);
}

// The epilogues address per-row state by emb's row number (tile.row_begin + i): with a query slice the state
// buffer starts at row 0 and the queries' rows are cut out of it.
// With `active` or `grads` (CPU only), the epilogue also records what its backward needs.
at::Tensor loss_rows(const LossInputs& in, const LossRule& rule, cpu::ActivePairs* active = nullptr,
                     cpu::RowGradients* grads = nullptr) {
  const int64_t n = in.pairs.rows.size(0), first = in.pairs.query_begin;
  auto rows_out = at::zeros({first + n, kLossRowState}, in.pairs.rows.options().dtype(at::kDouble));
  for_each_pair_tile(in.pairs, [&](int64_t begin, const at::Tensor& sim) {
    auto tile = make_tile(in.pairs, begin, sim);
    if (active != nullptr || grads != nullptr) {
      cpu::loss_rows_tile(tile, in.lists, rule, rows_out, active, first, grads);
    } else {
      SLADE_TILE_DISPATCH(loss_rows_tile, tile, in.lists, rule, rows_out);
    }
  }, loss_tile_elems(in.pairs));
  return first == 0 ? rows_out : rows_out.narrow(0, first, n).clone();
}

// The most active pairs a contrastive forward records for its backward. A recorded pair costs the backward two
// d-long loops (its row's and its reference's gradient), an entry of the dense backward's recomputed tile and its
// one or two GEMMs about as many multiply-adds but vectorised and blocked; a sixteenth of all pairs is meant to
// stay on the record's side of that line (where the line lies was not measured), and the record (16 bytes a pair)
// within half a CPU tile's bytes. Clustered embeddings, with few negatives inside the margin, record a few pairs
// per row (benchmarks/RESULTS.md, "Backwards without recomputed tiles").
int64_t max_active_pairs(int64_t n, int64_t m) { return std::min(n * m / 16, kCpuTileElems / 8); }

// Back through xn = x / max(|x|, eps) (torch.nn.functional.normalize), in x's compute dtype.
at::Tensor normalize_backward(const at::Tensor& grad_xn, const at::Tensor& xn, const at::Tensor& x) {
  auto norm = x.to(xn.scalar_type()).norm(2, {-1}, /*keepdim=*/true);
  return normalize_rows_backward(grad_xn, xn, norm).to(x.scalar_type());
}

// The dense backward: each tile recomputed, turned into per-pair weights by the epilogue and multiplied out.
// `state` has the query rows' rows; the epilogues address it by emb's row number, hence the zero rows in front of
// a query slice.
void accumulate_tile_gradients(const LossInputs& in, const LossRule& rule, at::Tensor state, int64_t first,
                               bool want_rows, bool want_refs, at::Tensor& grad_rn, at::Tensor& grad_qn) {
  const Distance& dist = in.pairs.distance;
  const int64_t n = in.pairs.rows.size(0);
  if (first > 0) state = at::cat({state.new_zeros({first, state.size(1)}), state});
  state = state.contiguous();
  // For a distance, [rows | 1] and [refs | 1]: one GEMM then gives h @ refs with the row sums of h (and h^T @ rows
  // with its column sums) instead of two more passes over the tile. The padded references hold [refs | 1] already.
  const int64_t d = in.pairs.refs.size(1);
  auto with_ones = [](const at::Tensor& x) { return at::cat({x, at::ones({x.size(0), 1}, x.options())}, 1); };
  // Against itself want_rows == want_refs and the rows are a slice of the references.
  const at::Tensor refs_1 = dist.similarity || !want_rows ? at::Tensor()
                            : in.pairs.padded_refs.defined() ? in.pairs.padded_refs.narrow(1, 0, d + 1)
                                                             : with_ones(in.pairs.refs);
  const at::Tensor rows_1 = dist.similarity || !want_refs ? at::Tensor()
                            : in.pairs.self ? refs_1.narrow(0, first, n) : with_ones(in.pairs.rows);
  at::Tensor inv_buffer;
  for_each_pair_tile(in.pairs, [&](int64_t begin, const at::Tensor& sim) {
    // -1 / d of a tile of -d, taken before the epilogue overwrites it; 0 where d = 0 (as torch.cdist's backward):
    // 1 / -0 is the only infinity there is, and nan_to_num_ is 12x faster than a where on a tile. One buffer for
    // all tiles: fresh pages for every tile cost more than the reciprocal itself.
    at::Tensor neg_inv_d;
    if (needs_inverse(dist)) {
      if (!inv_buffer.defined()) inv_buffer = at::empty_like(sim);
      neg_inv_d = inv_buffer.narrow(0, 0, sim.size(0));
      at::reciprocal_out(neg_inv_d, sim).nan_to_num_(0.0, 0.0, 0.0);
    }
    auto tile = make_tile(in.pairs, begin, sim);
    SLADE_TILE_DISPATCH(loss_weights_tile, tile, in.lists, rule, state);  // sim now holds d(loss)/d(closeness)
    const int64_t b = sim.size(0);
    auto block = in.pairs.rows.narrow(0, begin, b);
    if (dist.similarity) {  // closeness x . y
      if (want_rows) grad_rn.narrow(0, begin, b).add_(at::mm(tile.sim, in.pairs.refs));
      if (want_refs) grad_qn.add_(at::mm(tile.sim.t(), block));
      return;
    }
    // closeness -|x - y|^p: its gradient in x is g (y - x) with g = w / d (p = 1) or 2 w (p = 2). With h = -g,
    // that is -(h @ refs) + rowsum(h) x, and in y it is -(h^T @ rows) + colsum(h) y.
    const at::Tensor h = dist.power == 1 ? tile.sim.mul_(neg_inv_d) : tile.sim.mul_(-2);
    if (want_rows) {
      const auto hy = at::mm(h, refs_1);
      grad_rn.narrow(0, begin, b).sub_(hy.narrow(1, 0, d)).addcmul_(block, hy.narrow(1, d, 1));
    }
    if (want_refs) {
      const auto hx = at::mm(h.t(), rows_1.narrow(0, begin, b));
      grad_qn.sub_(hx.narrow(1, 0, d)).addcmul_(in.pairs.refs, hx.narrow(1, d, 1));
    }
  }, loss_tile_elems(in.pairs));
}

// `active`: a contrastive forward's record (cpu::ActivePairs::tensors), or undefined tensors to recompute the tiles.
std::tuple<at::Tensor, at::Tensor> loss_rows_backward(const at::Tensor& grad_rows, const at::Tensor& rows,
                                                      const at::Tensor& emb, const Opt& ref_emb,
                                                      const LossInputs& in, const LossRule& rule,
                                                      const std::array<bool, 2>& mask,
                                                      const std::array<at::Tensor, 3>& active = {}) {
  const int64_t n = in.pairs.rows.size(0);
  TORCH_CHECK_VALUE(grad_rows.dim() == 2 && grad_rows.size(0) == n && grad_rows.size(1) == kLossRowState,
                    "grad_rows must be [N, 4], got shape ", grad_rows.sizes());
  TORCH_CHECK_VALUE(rows.dim() == 2 && rows.size(0) == n && rows.size(1) == kLossRowState,
                    "rows must be [N, 4], got shape ", rows.sizes());
  // (grad_pos_acc, grad_neg_acc, pos_acc, neg_acc) of the query rows: the counts carry no gradient.
  const int64_t first = in.pairs.query_begin;
  auto state = at::cat({grad_rows.narrow(1, 0, 2), rows.narrow(1, 0, 2)}, 1)
                   .to(in.pairs.rows.device(), at::kDouble);
  // The rows' gradient feeds grad_emb, the references' grad_ref_emb; against itself the rows are a slice of the
  // references and their gradient a view of the references' one.
  const bool want_rows = mask[0];
  const bool want_refs = in.pairs.self ? mask[0] : mask[1];
  auto none = [&] { return emb.new_empty({0}); };
  if (!want_rows && !want_refs) return {none(), none()};
  at::Tensor grad_rn, grad_qn;
  if (in.pairs.self) {
    grad_qn = at::zeros_like(in.pairs.refs);
    grad_rn = grad_qn.narrow(0, first, n);
  } else {
    if (want_rows) grad_rn = at::zeros_like(in.pairs.rows);
    if (want_refs) grad_qn = at::zeros_like(in.pairs.refs);
  }
  const Distance& dist = in.pairs.distance;
  if (active[0].defined()) {
    cpu::contrastive_pairs_backward(active, in.pairs.rows, in.pairs.refs, dist, rule, state.contiguous(),
                                    want_rows ? grad_rn : at::Tensor(), want_refs ? grad_qn : at::Tensor());
  } else {
    accumulate_tile_gradients(in, rule, state, first, want_rows, want_refs, grad_rn, grad_qn);
  }
  // Back through the normalisation, or from the compute dtype to the embeddings' one.
  auto finish = [&](const at::Tensor& grad, const at::Tensor& rows, const at::Tensor& x) {
    return dist.normalize ? normalize_backward(grad, rows, x) : grad.to(x.scalar_type());
  };
  if (in.pairs.self) return {finish(grad_qn, in.pairs.refs, emb), none()};
  auto grad_emb = want_rows ? finish(grad_rn, in.pairs.rows, emb) : none();
  if (!want_refs) return {grad_emb, none()};
  return {grad_emb, finish(grad_qn, in.pairs.refs, *ref_emb)};
}

// A contrastive forward's record, checked as it arrives from Python (a user may hand the backward op anything).
std::array<at::Tensor, 3> check_active_pairs(const at::Tensor& ptr, const Opt& cols, const Opt& closeness,
                                             const PairInputs& in) {
  const int64_t n = in.rows.size(0), m = in.refs.size(0);
  TORCH_CHECK_VALUE(in.rows.is_cpu(), "active pairs are recorded on the CPU only");
  TORCH_CHECK_VALUE(cols.has_value() && closeness.has_value(),
                    "active_ptr, active_cols and active_closeness must be given together");
  TORCH_CHECK_VALUE(ptr.dim() == 1 && ptr.scalar_type() == at::kLong && ptr.numel() == 2 * n + 1 && ptr.is_cpu(),
                    "active_ptr must be a CPU int64 tensor of 2 N + 1 = ", 2 * n + 1, " entries, got ",
                    ptr.scalar_type(), " ", ptr.sizes());
  TORCH_CHECK_VALUE(cols->dim() == 1 && cols->scalar_type() == at::kLong && cols->is_cpu() &&
                        closeness->dim() == 1 && closeness->scalar_type() == at::kDouble && closeness->is_cpu() &&
                        cols->numel() == closeness->numel(),
                    "active_cols (int64) and active_closeness (float64) must be CPU tensors of one length");
  TORCH_CHECK_VALUE(ptr[0].item<int64_t>() == 0 && ptr[2 * n].item<int64_t>() == cols->numel() &&
                        (ptr.diff() >= 0).all().item<bool>(),
                    "active_ptr must run from 0 to the number of active pairs, non-decreasing");
  TORCH_CHECK_VALUE(cols->numel() == 0 || (cols->min().item<int64_t>() >= 0 && cols->max().item<int64_t>() < m),
                    "active_cols must index the reference set [0, ", m, ")");
  return {ptr.contiguous(), cols->contiguous(), closeness->contiguous()};
}

// grad_emb from the multi-similarity forward's row gradients G: dL/d(row) = g_pos G[:, 0] + g_neg G[:, 1], then
// back through the normalisation.
at::Tensor rows_gradient_from(const at::Tensor& row_grads, const at::Tensor& grad_rows, const at::Tensor& rows,
                              const at::Tensor& emb, const LossInputs& in) {
  const auto& x = in.pairs.rows;
  const int64_t n = x.size(0), d = x.size(1);
  TORCH_CHECK_VALUE(row_grads.dim() == 1 && row_grads.numel() == n * 2 * d &&
                        row_grads.scalar_type() == x.scalar_type() && row_grads.device() == x.device(),
                    "row_grads must be the forward's [N, 2, d] = [", n, ", 2, ", d, "] flattened, in ",
                    x.scalar_type(), " on ", x.device(), ", got ", row_grads.scalar_type(), " ", row_grads.sizes());
  TORCH_CHECK_VALUE(grad_rows.dim() == 2 && grad_rows.size(0) == n && grad_rows.size(1) == kLossRowState &&
                        rows.dim() == 2 && rows.size(0) == n && rows.size(1) == kLossRowState,
                    "grad_rows and rows must be [N, 4], got shapes ", grad_rows.sizes(), " and ", rows.sizes());
  auto upstream = grad_rows.narrow(1, 0, 2).to(x.device(), x.scalar_type()).unsqueeze(2);  // [n, 2, 1]
  auto grad = (row_grads.view({n, 2, d}) * upstream).sum(1);
  return in.pairs.distance.normalize ? normalize_backward(grad, x, emb) : grad.to(emb.scalar_type());
}

LossRule ms_rule(double alpha, double beta, double base, c10::string_view distance) {
  check_finite_scalar(alpha, "alpha");
  check_finite_scalar(beta, "beta");
  check_finite_scalar(base, "base");
  TORCH_CHECK_VALUE(alpha != 0.0, "alpha must be non-zero (the loss divides by it)");
  TORCH_CHECK_VALUE(beta != 0.0, "beta must be non-zero (the loss divides by it)");
  LossRule rule;
  rule.kind = LossKind::MultiSimilarity;
  rule.alpha = alpha;
  rule.beta = beta;
  rule.base = as_closeness(base, parse_distance(std::string(distance)));
  return rule;
}

LossRule contrastive_rule(double pos_margin, double neg_margin, c10::string_view distance) {
  check_finite_scalar(pos_margin, "pos_margin");
  check_finite_scalar(neg_margin, "neg_margin");
  LossRule rule;
  rule.kind = LossKind::Contrastive;
  const auto dist = parse_distance(std::string(distance));
  rule.pos_margin = as_closeness(pos_margin, dist);
  rule.neg_margin = as_closeness(neg_margin, dist);
  return rule;
}

// keep_row_grads: on the CPU, against references through a similarity without pair lists, also return the rows'
// gradients (cpu::RowGradients, [N, 2, d] flattened) for a backward that needs no other; else an empty tensor.
std::tuple<at::Tensor, at::Tensor> multi_similarity_loss_rows(
    const at::Tensor& emb, const Opt& labels, const Opt& ref_emb, const Opt& ref_labels, const Opt& pos_ptr,
    const Opt& pos_cols, const Opt& neg_ptr, const Opt& neg_cols, double alpha, double beta, double base,
    c10::string_view distance, int64_t query_begin, int64_t query_end, bool keep_row_grads) {
  auto rule = ms_rule(alpha, beta, base, distance);
  auto in = prepare_loss_inputs(emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, query_begin,
                                query_end, distance);
  auto none = emb.new_empty({0}, emb.options().dtype(in.pairs.rows.scalar_type()));
  if (!keep_row_grads || !emb.is_cpu() || in.pairs.self || in.lists.defined() || !in.pairs.distance.similarity) {
    return {loss_rows(in, rule), none};
  }
  cpu::RowGradients grads;
  grads.refs = in.pairs.refs;
  grads.out = at::zeros({in.pairs.rows.size(0), 2, in.pairs.rows.size(1)}, in.pairs.rows.options());
  auto rows = loss_rows(in, rule, nullptr, &grads);
  return {rows, grads.computed ? grads.out.view({-1}) : none};  // flat: its size is the data's, as the fake's
}

// row_grads: the forward's rows' gradients, used when they are given and only the rows' gradient is asked for.
std::tuple<at::Tensor, at::Tensor> multi_similarity_loss_rows_backward(
    const at::Tensor& grad_rows, const at::Tensor& rows, const at::Tensor& emb, const Opt& labels,
    const Opt& ref_emb, const Opt& ref_labels, const Opt& pos_ptr, const Opt& pos_cols, const Opt& neg_ptr,
    const Opt& neg_cols, double alpha, double beta, double base, c10::string_view distance, int64_t query_begin,
    int64_t query_end, std::array<bool, 2> output_mask, const Opt& row_grads) {
  auto rule = ms_rule(alpha, beta, base, distance);
  auto in = prepare_loss_inputs(emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, query_begin,
                                query_end, distance);
  const bool given = row_grads.has_value() && row_grads->numel() > 0;
  if (given && !output_mask[1] && output_mask[0] && !in.pairs.self) {
    return {rows_gradient_from(*row_grads, grad_rows, rows, emb, in), emb.new_empty({0})};
  }
  return loss_rows_backward(grad_rows, rows, emb, ref_emb, in, rule, output_mask);
}

// keep_active: on the CPU, also return the record of the pairs with a non-zero loss (cpu::ActivePairs::tensors)
// for the backward, or three empty tensors (not asked for, too many pairs, or another device).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> contrastive_loss_rows(
    const at::Tensor& emb, const Opt& labels, const Opt& ref_emb, const Opt& ref_labels, const Opt& pos_ptr,
    const Opt& pos_cols, const Opt& neg_ptr, const Opt& neg_cols, double pos_margin, double neg_margin,
    c10::string_view distance, int64_t query_begin, int64_t query_end, bool keep_active) {
  auto rule = contrastive_rule(pos_margin, neg_margin, distance);
  auto in = prepare_loss_inputs(emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, query_begin,
                                query_end, distance);
  const int64_t n = in.pairs.rows.size(0);
  if (!keep_active || !emb.is_cpu()) {
    auto none = at::empty({0}, emb.options().dtype(at::kLong));
    return {loss_rows(in, rule), none, none.clone(), none.to(at::kDouble)};
  }
  cpu::ActivePairs active(n, max_active_pairs(n, in.pairs.refs.size(0)));
  auto rows = loss_rows(in, rule, &active);
  auto [ptr, cols, closeness] = active.tensors();
  return {rows, ptr, cols, closeness};
}

// active_ptr / active_cols / active_closeness: the forward's record, used when it is one (2 N + 1 pointers).
std::tuple<at::Tensor, at::Tensor> contrastive_loss_rows_backward(
    const at::Tensor& grad_rows, const at::Tensor& rows, const at::Tensor& emb, const Opt& labels,
    const Opt& ref_emb, const Opt& ref_labels, const Opt& pos_ptr, const Opt& pos_cols, const Opt& neg_ptr,
    const Opt& neg_cols, double pos_margin, double neg_margin, c10::string_view distance, int64_t query_begin,
    int64_t query_end, std::array<bool, 2> output_mask, const Opt& active_ptr, const Opt& active_cols,
    const Opt& active_closeness) {
  auto rule = contrastive_rule(pos_margin, neg_margin, distance);
  const bool recorded = active_ptr.has_value() && active_ptr->numel() > 0;
  auto in = prepare_loss_inputs(emb, labels, ref_emb, ref_labels, pos_ptr, pos_cols, neg_ptr, neg_cols, query_begin,
                                query_end, distance, /*for_tiles=*/!recorded);
  std::array<at::Tensor, 3> active;
  if (recorded) active = check_active_pairs(*active_ptr, active_cols, active_closeness, in.pairs);
  return loss_rows_backward(grad_rows, rows, emb, ref_emb, in, rule, output_mask, active);
}

}  // namespace

TORCH_LIBRARY_IMPL(slade, CPU, m) {
  m.impl("multi_similarity_loss_rows", &multi_similarity_loss_rows);
  m.impl("multi_similarity_loss_rows_backward", &multi_similarity_loss_rows_backward);
  m.impl("contrastive_loss_rows", &contrastive_loss_rows);
  m.impl("contrastive_loss_rows_backward", &contrastive_loss_rows_backward);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(slade, CUDA, m) {
  m.impl("multi_similarity_loss_rows", &multi_similarity_loss_rows);
  m.impl("multi_similarity_loss_rows_backward", &multi_similarity_loss_rows_backward);
  m.impl("contrastive_loss_rows", &contrastive_loss_rows);
  m.impl("contrastive_loss_rows_backward", &contrastive_loss_rows_backward);
}
#endif

}  // namespace slade
