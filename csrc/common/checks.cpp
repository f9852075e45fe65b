// Argument checks and float32 helpers shared by every driver (common.h).
#include "slade/common.h"

#include <algorithm>
#include <cmath>

namespace slade {

void check_embeddings(const at::Tensor& emb, const char* name) {
  TORCH_CHECK_VALUE(emb.dim() == 2, name, " must be 2-D [N, d], got ", emb.dim(), "-D with shape ", emb.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(emb.scalar_type()), name,
                   " must be a floating tensor (float32/float64/float16/bfloat16), got ", emb.scalar_type());
  TORCH_CHECK_VALUE(emb.size(1) > 0 || emb.size(0) == 0, name, " must have at least one feature column");
  // NaN/Inf policy: refuse. A NaN similarity compares false with everything and would silently drop pairs.
  TORCH_CHECK_VALUE(all_finite(emb), name, " contains NaN or Inf values");
}

bool all_finite(const at::Tensor& x) {
  if (x.numel() == 0) return true;
  // One pass without temporaries (isfinite(x).all() makes several, 16x slower on a 16k x 128 memory bank): the
  // min and max propagate NaN, and an infinity is one of them.
  const auto [lo, hi] = at::aminmax(x);
  return at::isfinite(at::stack({lo, hi})).all().item<bool>();
}

void check_labels(const at::Tensor& labels, int64_t n, const at::Device& device, const char* name) {
  TORCH_CHECK_VALUE(labels.dim() == 1, name, " must be 1-D, got shape ", labels.sizes());
  TORCH_CHECK_TYPE(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false), name,
                   " must be an integer tensor, got ", labels.scalar_type());
  TORCH_CHECK_VALUE(labels.size(0) == n, name, " has length ", labels.size(0), " but the embeddings have ", n,
                    " rows");
  check_same_device(labels, device, name);
}

void check_same_device(const at::Tensor& other, const at::Device& device, const char* name) {
  TORCH_CHECK_VALUE(other.device() == device, name, " is on ", other.device(), " but the embeddings are on ",
                    device);
}

void check_basis(const at::Tensor& basis, int64_t expected_dim, const at::Device& device, const char* name) {
  TORCH_CHECK_VALUE(basis.dim() == 2, name, " must be 2-D [K, d], got shape ", basis.sizes());
  TORCH_CHECK_TYPE(at::isFloatingType(basis.scalar_type()), name, " must be a floating tensor, got ",
                   basis.scalar_type());
  TORCH_CHECK_VALUE(basis.size(1) == expected_dim, name, " has ", basis.size(1),
                    " columns but the embeddings have d = ", expected_dim);
  TORCH_CHECK_VALUE(basis.size(0) > 0, name, " must have at least one row");
  check_same_device(basis, device, name);
  TORCH_CHECK_VALUE(all_finite(basis), name, " contains NaN or Inf values");
}

void check_finite_scalar(double value, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(value), name, " must be finite, got ", value);
}

at::ScalarType compute_dtype(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

at::Tensor row_norm_divisor(const at::Tensor& xf) {
  // Same epsilon as torch.nn.functional.normalize, so a zero row maps to zero (similarity 0 to everything).
  return xf.norm(2, {-1}, /*keepdim=*/true).clamp_min(kNormEps);
}

at::Tensor normalize_rows(const at::Tensor& x) {
  auto xf = x.to(compute_dtype(x));
  return xf / row_norm_divisor(xf);
}

at::Tensor normalize_rows_backward(const at::Tensor& grad_xn, const at::Tensor& xn, const at::Tensor& norm) {
  auto tangent = (grad_xn - xn * (grad_xn * xn).sum(-1, /*keepdim=*/true)) / norm.clamp_min(kNormEps);
  return at::where(norm > kNormEps, tangent, grad_xn / kNormEps);
}

at::Tensor project_normalize(const at::Tensor& x, const at::Tensor& basis) {
  auto dtype = compute_dtype(x);
  return normalize_rows(at::matmul(x.to(dtype), basis.to(dtype).t()));
}

at::Tensor labels_int64(const at::Tensor& labels) { return labels.to(at::kLong).contiguous(); }

Distance parse_distance(const std::string& name) {
  if (name == "cosine") return {true, true, 1};
  if (name == "dot") return {false, true, 1};
  if (name == "l2") return {true, false, 1};
  if (name == "l2sq") return {true, false, 2};
  if (name == "euclidean") return {false, false, 1};
  if (name == "sqeuclidean") return {false, false, 2};
  TORCH_CHECK_VALUE(false, "distance must be one of \"cosine\", \"dot\", \"l2\", \"l2sq\", \"euclidean\", "
                    "\"sqeuclidean\"; got \"", name, "\"");
}

at::Tensor closeness_tile(const at::Tensor& block, const at::Tensor& refs, const at::Tensor& padded_refs,
                          const Distance& distance) {
  if (distance.similarity) return at::mm(block, refs.t());
  at::Tensor tile;
  if (padded_refs.defined()) {  // ATen's _euclidean_dist, call for call, with the references' half done once
    auto norm = block.pow(2).sum(-1, /*keepdim=*/true);
    auto padded_block = at::cat({block.mul(-2), norm, at::ones_like(norm)}, -1);
    tile = padded_block.matmul(padded_refs.mT());
    tile.clamp_min_(0).sqrt_();
  } else {
    tile = at::cdist(block, refs, 2.0, /*compute_mode=*/2);  // its direct form: 2 = never the matrix product
  }
  if (distance.power == 2) tile.mul_(tile);  // PML squares the distance matrix: torch.cdist(x, y) ** 2
  return tile.neg_();
}

at::Tensor cdist_padded_refs(const at::Tensor& x, bool normalize) {
  const int64_t m = x.size(0), d = x.size(1);
  auto xf = x.to(compute_dtype(x));
  auto padded = at::empty({m, d + 2}, xf.options());
  auto refs = padded.narrow(1, 0, d);
  if (normalize) {
    at::div_out(refs, xf, row_norm_divisor(xf));  // normalize_rows, written into place
  } else {
    refs.copy_(xf);
  }
  padded.select(1, d).fill_(1);
  // |refs|^2 as _euclidean_dist sums it (pow, then sum over each row), a block of rows at a time: no [M, d]
  // temporary beside the references. A row's sum does not depend on how many rows are summed with it.
  const int64_t block = std::max<int64_t>(1, (int64_t(1) << 20) / std::max<int64_t>(d, 1));
  for (int64_t begin = 0; begin < m; begin += block) {
    const int64_t len = std::min(block, m - begin);
    padded.narrow(0, begin, len).narrow(1, d + 1, 1).copy_(refs.narrow(0, begin, len).pow(2).sum(-1, true));
  }
  return padded;
}

int64_t rows_per_tile(int64_t n_rows, int64_t n_cols, int64_t max_tile_elems) {
  int64_t rows = n_cols > 0 ? max_tile_elems / n_cols : n_rows;
  return std::max<int64_t>(1, std::min<int64_t>(rows, std::max<int64_t>(n_rows, 1)));
}

void for_each_closeness_tile(const at::Tensor& rows, const at::Tensor& refs, const at::Tensor& padded_refs,
                             const Distance& distance, int64_t max_tile_elems,
                             const std::function<void(int64_t, const at::Tensor&)>& fn) {
  const int64_t n = rows.size(0);
  const int64_t m = refs.size(0);
  if (n == 0 || m == 0) return;
  TORCH_INTERNAL_ASSERT(padded_refs.defined() == (!distance.similarity && cdist_uses_mm(n, m)),
                        "padded_refs goes with an L2 distance in torch.cdist's matrix-product form");
  const int64_t block = rows_per_tile(n, m, max_tile_elems);
  for (int64_t begin = 0; begin < n; begin += block) {
    const int64_t len = std::min(block, n - begin);
    fn(begin, closeness_tile(rows.narrow(0, begin, len), refs, padded_refs, distance).contiguous());
  }
}

}  // namespace slade
