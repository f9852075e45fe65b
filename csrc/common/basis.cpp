// Drivers of the basis family: basis similarity and pair statistics (forward and backward). The projection and
// normalisation are ATen ops on either device; the pair statistics are accumulated tile by tile by the device
// epilogues (csrc/cpu/basis_cpu.cpp, csrc/cuda/basis_cuda.cu). The backward ops take an output_mask (emb, basis,
// ref_emb), as ATen's backward ops do: a gradient that is not asked for is not computed and comes back as an empty
// [0] tensor.
#include <torch/library.h>

#include "slade/common.h"
#include "slade/dispatch.h"
#include "slade/drivers.h"

namespace slade {
namespace {

using Opt = c10::optional<at::Tensor>;

// r = x W^T and its row norms (clamped like F.normalize), in the compute dtype.
struct Projection {
  at::Tensor x, rn, norm;
};
Projection project(const at::Tensor& x, const at::Tensor& basis) {
  Projection p;
  p.x = x.to(compute_dtype(x));
  auto r = at::matmul(p.x, basis.to(p.x.scalar_type()).t());
  p.norm = r.norm(2, {-1}, /*keepdim=*/true);
  p.rn = r / p.norm.clamp_min(kNormEps);
  return p;
}

// Back through rn = r / max(|r|, eps) and r = x W^T: returns (grad_x, grad_W) for grad_rn; each one only when
// asked for (else undefined).
std::pair<at::Tensor, at::Tensor> projection_backward(const at::Tensor& grad_rn, const Projection& p,
                                                      const at::Tensor& basis, bool want_x, bool want_w) {
  at::Tensor grad_x, grad_w;
  if (!want_x && !want_w) return {grad_x, grad_w};
  auto grad_r = normalize_rows_backward(grad_rn, p.rn, p.norm);
  if (want_x) grad_x = at::matmul(grad_r, basis.to(grad_r.scalar_type()));
  if (want_w) grad_w = at::mm(grad_r.reshape({-1, grad_r.size(-1)}).t(), p.x.reshape({-1, p.x.size(-1)}));
  return {grad_x, grad_w};
}

// Which gradients a backward op computes: (emb, basis, ref_emb).
using OutputMask = std::array<bool, 3>;

// The backward ops' outputs: the gradients in their inputs' dtypes, an empty [0] tensor for one not asked for (or,
// for ref_emb, absent). grad_w_ref is the reference side's share of the basis gradient (undefined when none).
std::tuple<at::Tensor, at::Tensor, at::Tensor> basis_grads(const at::Tensor& emb, const at::Tensor& basis,
                                                           const Opt& ref_emb, const OutputMask& mask,
                                                           const at::Tensor& grad_x, const at::Tensor& grad_w,
                                                           const at::Tensor& grad_w_ref, const at::Tensor& grad_y) {
  auto none = [&] { return emb.new_empty({0}); };
  auto out_x = mask[0] ? grad_x.to(emb.scalar_type()) : none();
  auto out_w = !mask[1] ? none()
               : grad_w_ref.defined() ? (grad_w + grad_w_ref).to(basis.scalar_type())
                                      : grad_w.to(basis.scalar_type());
  auto out_y = ref_emb.has_value() && mask[2] ? grad_y.to(ref_emb->scalar_type()) : none();
  return {out_x, out_w, out_y};
}

void check_similarity_inputs(const at::Tensor& emb, const at::Tensor& basis, const Opt& ref_emb) {
  TORCH_CHECK_VALUE(emb.dim() == 2 || emb.dim() == 3, "emb must be [N, d] or batched [B, N, d], got shape ",
                    emb.sizes());
  check_embeddings(emb.reshape({-1, emb.size(-1)}), "emb");
  check_basis(basis, emb.size(-1), emb.device(), "basis");
  if (ref_emb.has_value()) {
    TORCH_CHECK_VALUE(ref_emb->dim() == emb.dim(), "ref_emb must have as many dims as emb (", emb.dim(),
                      "), got shape ", ref_emb->sizes());
    TORCH_CHECK_VALUE(ref_emb->size(-1) == emb.size(-1), "ref_emb has d = ", ref_emb->size(-1),
                      " but emb has d = ", emb.size(-1));
    TORCH_CHECK_VALUE(emb.dim() == 2 || ref_emb->size(0) == emb.size(0), "ref_emb has batch size ",
                      ref_emb->size(0), " but emb has ", emb.size(0));
    check_same_device(*ref_emb, emb.device(), "ref_emb");
    check_embeddings(ref_emb->reshape({-1, ref_emb->size(-1)}), "ref_emb");
  }
}

at::Tensor basis_similarity(const at::Tensor& emb, const at::Tensor& basis, const Opt& ref_emb) {
  check_similarity_inputs(emb, basis, ref_emb);
  auto rn = project(emb, basis).rn;
  auto qn = ref_emb.has_value() ? project(*ref_emb, basis).rn : rn;
  return at::matmul(rn, qn.transpose(-1, -2)).to(emb.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> basis_similarity_backward(const at::Tensor& grad,
                                                                          const at::Tensor& emb,
                                                                          const at::Tensor& basis,
                                                                          const Opt& ref_emb,
                                                                          std::array<bool, 3> output_mask) {
  const OutputMask& mask = output_mask;
  const bool want_p = mask[0] || mask[1];  // the query side feeds grad_emb and grad_basis
  const bool want_q = ref_emb.has_value() && (mask[2] || mask[1]);
  if (!want_p && !want_q) return basis_grads(emb, basis, ref_emb, mask, {}, {}, {}, {});
  auto p = project(emb, basis);
  auto g = grad.to(p.rn.scalar_type());
  if (!ref_emb.has_value()) {
    at::Tensor grad_rn;
    if (want_p) grad_rn = at::matmul(g + g.transpose(-1, -2), p.rn);
    auto [grad_x, grad_w] = projection_backward(grad_rn, p, basis, mask[0], mask[1]);
    return basis_grads(emb, basis, ref_emb, mask, grad_x, grad_w, at::Tensor(), at::Tensor());
  }
  auto q = project(*ref_emb, basis);
  at::Tensor grad_rn, grad_qn;
  if (want_p) grad_rn = at::matmul(g, q.rn);
  if (want_q) grad_qn = at::matmul(g.transpose(-1, -2), p.rn);
  auto [grad_x, grad_w] = projection_backward(grad_rn, p, basis, mask[0], mask[1]);
  auto [grad_y, grad_w_ref] = projection_backward(grad_qn, q, basis, mask[2], mask[1]);
  return basis_grads(emb, basis, ref_emb, mask, grad_x, grad_w, grad_w_ref, grad_y);
}

// Prepared inputs of the pair statistics: projections plus the validated labels.
struct StatsInputs {
  Projection p, q;
  PairInputs pairs;
};
StatsInputs prepare_stats(const at::Tensor& emb, const at::Tensor& basis, const at::Tensor& labels,
                          const Opt& ref_emb, const Opt& ref_labels, int64_t query_begin, int64_t query_end) {
  TORCH_CHECK_VALUE(emb.dim() == 2, "emb must be 2-D [N, d], got shape ", emb.sizes());
  TORCH_CHECK_VALUE(ref_emb.has_value() == ref_labels.has_value(),
                    "ref_emb and ref_labels must be given together");
  StatsInputs s;
  // Validates everything (labels, devices, basis) and projects with the basis.
  s.pairs = prepare_pair_inputs(emb, labels, ref_emb, ref_labels, /*labels_required=*/true, &basis, "labels",
                                query_begin, query_end);
  s.p = project(emb, basis);
  s.q = ref_emb.has_value() ? project(*ref_emb, basis) : s.p;
  // Against itself the query rows are a slice of the references (all of them unless query_rows says otherwise).
  const int64_t n = s.pairs.rows.size(0);
  s.pairs.refs = s.q.rn;
  s.pairs.rows = s.pairs.self ? s.q.rn.narrow(0, s.pairs.query_begin, n) : s.p.rn;
  return s;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> basis_pair_stats(
    const at::Tensor& emb, const at::Tensor& basis, const at::Tensor& labels, const Opt& ref_emb,
    const Opt& ref_labels, int64_t query_begin, int64_t query_end) {
  auto s = prepare_stats(emb, basis, labels, ref_emb, ref_labels, query_begin, query_end);
  auto acc = at::zeros({6}, emb.options().dtype(at::kDouble));
  for_each_pair_tile(s.pairs, [&](int64_t begin, const at::Tensor& sim) {
    auto tile = make_tile(s.pairs, begin, sim);
    SLADE_TILE_DISPATCH(pair_stats_tile, tile, acc);
  });
  auto out_dtype = s.p.rn.scalar_type();
  auto moments = [&](int64_t k) {
    auto n = acc[k + 2];
    auto safe_n = n.clamp_min(1.0);
    auto mu = at::where(n > 0, acc[k] / safe_n, at::zeros_like(n));
    auto var = at::where(n > 0, (acc[k + 1] / safe_n - mu * mu).clamp_min(0.0), at::zeros_like(n));
    return std::make_tuple(mu.to(out_dtype), var.to(out_dtype), n.to(at::kLong));
  };
  auto [mu_pos, var_pos, n_pos] = moments(0);
  auto [mu_neg, var_neg, n_neg] = moments(3);
  return {mu_pos, var_pos, mu_neg, var_neg, n_pos, n_neg};
}

// grad_stats = [d mu_pos, d var_pos, d mu_neg, d var_neg]; stats = [mu_pos, var_pos, mu_neg, var_neg, n_pos, n_neg].
std::tuple<at::Tensor, at::Tensor, at::Tensor> basis_pair_stats_backward(
    const at::Tensor& grad_stats, const at::Tensor& emb, const at::Tensor& basis, const at::Tensor& labels,
    const Opt& ref_emb, const Opt& ref_labels, const at::Tensor& stats, int64_t query_begin, int64_t query_end,
    std::array<bool, 3> output_mask) {
  TORCH_CHECK_VALUE(grad_stats.numel() == 4, "grad_stats must hold 4 values");
  TORCH_CHECK_VALUE(stats.numel() == 6, "stats must hold 6 values");
  const OutputMask& mask = output_mask;
  auto s = prepare_stats(emb, basis, labels, ref_emb, ref_labels, query_begin, query_end);
  // The query rows' gradient feeds grad_emb and grad_basis, the references' grad_ref_emb and grad_basis; against
  // itself the rows are a slice of the references and their gradient a view of the references' one.
  const bool want_p = mask[0] || mask[1];
  const bool want_q = s.pairs.self ? want_p : (mask[2] || mask[1]);
  if (!want_p && !want_q) return basis_grads(emb, basis, ref_emb, mask, {}, {}, {}, {});
  auto g = grad_stats.to(at::kDouble).cpu();
  auto st = stats.to(at::kDouble).cpu();
  // side 0 = positive pairs, 1 = negative pairs.
  auto coef_of = [&](int64_t side) {
    double n = st[4 + side].item<double>();
    if (n <= 0) return std::make_pair(0.0, 0.0);
    double g_mu = g[2 * side].item<double>(), g_var = g[2 * side + 1].item<double>(), mu = st[2 * side].item<double>();
    // d mu / d s = 1/n;  d var / d s = 2 (s - mu) / n.
    return std::make_pair((g_mu - 2.0 * g_var * mu) / n, 2.0 * g_var / n);
  };
  auto [a_pos, b_pos] = coef_of(0);
  auto [a_neg, b_neg] = coef_of(1);
  const std::array<double, 4> coef{a_pos, b_pos, a_neg, b_neg};

  at::Tensor grad_rn, grad_qn;
  if (s.pairs.self) {
    grad_qn = at::zeros_like(s.pairs.refs);
    grad_rn = grad_qn.narrow(0, s.pairs.query_begin, s.pairs.rows.size(0));
  } else {
    if (want_p) grad_rn = at::zeros_like(s.pairs.rows);
    if (want_q) grad_qn = at::zeros_like(s.pairs.refs);
  }
  for_each_pair_tile(s.pairs, [&](int64_t begin, const at::Tensor& sim) {
    auto tile = make_tile(s.pairs, begin, sim);
    // sim now holds d(loss)/d(s) for this block
    SLADE_TILE_DISPATCH(pair_weights_tile, tile, coef);
    auto rows = s.pairs.rows.narrow(0, begin, sim.size(0));
    if (want_p) grad_rn.narrow(0, begin, sim.size(0)).add_(at::mm(tile.sim, s.pairs.refs));
    if (want_q) grad_qn.add_(at::mm(tile.sim.t(), rows));
  });
  if (s.pairs.self) {
    auto [grad_x, grad_w] = projection_backward(grad_qn, s.p, basis, mask[0], mask[1]);
    return basis_grads(emb, basis, ref_emb, mask, grad_x, grad_w, at::Tensor(), at::Tensor());
  }
  auto [grad_x, grad_w] = projection_backward(grad_rn, s.p, basis, mask[0], mask[1]);
  auto [grad_y, grad_w_ref] = projection_backward(grad_qn, s.q, basis, mask[2], mask[1]);
  return basis_grads(emb, basis, ref_emb, mask, grad_x, grad_w, grad_w_ref, grad_y);
}

}  // namespace

TORCH_LIBRARY_IMPL(slade, CPU, m) {
  m.impl("basis_similarity", &basis_similarity);
  m.impl("basis_similarity_backward", &basis_similarity_backward);
  m.impl("basis_pair_stats", &basis_pair_stats);
  m.impl("basis_pair_stats_backward", &basis_pair_stats_backward);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(slade, CUDA, m) {
  m.impl("basis_similarity", &basis_similarity);
  m.impl("basis_similarity_backward", &basis_similarity_backward);
  m.impl("basis_pair_stats", &basis_pair_stats);
  m.impl("basis_pair_stats_backward", &basis_pair_stats_backward);
}
#endif

}  // namespace slade
