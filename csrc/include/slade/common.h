// Shared, device-independent pieces of every op: argument checks, float32 normalisation and the row-block tiling
// that keeps similarity work at O(block * M) memory instead of O(N * M).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Optional.h>

#include <functional>
#include <string>

namespace slade {

// ---- argument checks: every message names the argument -------------------------------------------------------
// emb must be a 2-D floating tensor (float32/float64/float16/bfloat16) with finite values.
void check_embeddings(const at::Tensor& emb, const char* name);
// labels must be a 1-D integer tensor of length n on `device`.
void check_labels(const at::Tensor& labels, int64_t n, const at::Device& device, const char* name);
// other must live on `device`.
void check_same_device(const at::Tensor& other, const at::Device& device, const char* name);
// basis must be a 2-D floating tensor [K, d] with finite values and d == expected_dim.
void check_basis(const at::Tensor& basis, int64_t expected_dim, const at::Device& device, const char* name);
// A scalar threshold/margin must be finite (NaN would silently select nothing or everything).
void check_finite_scalar(double value, const char* name);
// Whether x holds no NaN or Inf (true when empty), in one pass.
bool all_finite(const at::Tensor& x);

// ---- numeric helpers ------------------------------------------------------------------------------------------
// Rows of x scaled to unit L2 norm, computed in float32 (fp16/bf16 inputs are upcast; float64 stays float64).
at::Tensor normalize_rows(const at::Tensor& x);
// What normalize_rows divides float rows xf by: max(|row|, eps).
at::Tensor row_norm_divisor(const at::Tensor& xf);
// torch.nn.functional.normalize's epsilon: a row with a smaller norm is divided by it instead.
constexpr double kNormEps = 1e-12;
// Gradient through xn = x / max(|x|, eps) along the last dim, given grad_xn, xn and the unclamped norms |x|.
at::Tensor normalize_rows_backward(const at::Tensor& grad_xn, const at::Tensor& xn, const at::Tensor& norm);
// Rows of normalize(x @ basis^T): the basis projection r = W f of docs/method.md, unit length.
at::Tensor project_normalize(const at::Tensor& x, const at::Tensor& basis);
// float32 unless the input is float64: the accumulation type of every kernel.
at::ScalarType compute_dtype(const at::Tensor& x);

// ---- distances ------------------------------------------------------------------------------------------------
// The distance options of the miners and losses, by name (pytorch-metric-learning's classes):
//   "cosine"       CosineSimilarity(), which is DotProductSimilarity(normalize_embeddings=True)
//   "dot"          DotProductSimilarity(normalize_embeddings=False)
//   "l2", "l2sq"   LpDistance(normalize_embeddings=True, p=2, power=1 / power=2)
//   "euclidean", "sqeuclidean"   LpDistance(normalize_embeddings=False, p=2, power=1 / power=2)
struct Distance {
  bool normalize = true;   // rows scaled to unit L2 norm first
  bool similarity = true;  // a dot product (larger is closer), else an L2 distance (smaller is closer)
  int power = 1;           // distances only: 1 or 2
};
Distance parse_distance(const std::string& name);

// Every epilogue compares "closeness" values, larger = closer: a similarity itself, a distance negated. Negation is
// exact in floating point, so a rule on -d with negated thresholds decides as PML's rule on d, ties included.
inline double as_closeness(double threshold, const Distance& distance) {
  return distance.similarity ? threshold : -threshold;
}
// The closeness tile of query rows `block` against `refs`: block @ refs^T, or -torch.cdist(block, refs)^power
// computed as torch.cdist computes it, so that a distance equals PML's, 0 for identical rows included. With
// `padded_refs` (cdist_padded_refs of refs) it is torch.cdist's matrix-product form, which torch picks when either
// side of the full matrix exceeds 25 rows; without, for a distance, its direct form.
at::Tensor closeness_tile(const at::Tensor& block, const at::Tensor& refs, const at::Tensor& padded_refs,
                          const Distance& distance);
// torch.cdist's matrix-product form (ATen's _euclidean_dist) extends its second argument to [refs, 1, |refs|^2] on
// every call: a copy of the references per tile. The drivers build it once per op from the embeddings x (refs = x
// normalised or not, in the compute dtype, written straight into its first d columns), with the values ATen's
// calls give, so each tile is still bitwise torch.cdist's; its first d + 1 columns serve the loss backward as
// [refs | 1].
at::Tensor cdist_padded_refs(const at::Tensor& x, bool normalize);
// torch.cdist's choice between its matrix-product and its direct form for an n x m distance matrix.
inline bool cdist_uses_mm(int64_t n, int64_t m) { return n > 25 || m > 25; }

// ---- tiling ---------------------------------------------------------------------------------------------------
// Number of query rows per similarity tile so that a tile holds at most `max_tile_elems` values (at least 1 row).
int64_t rows_per_tile(int64_t n_rows, int64_t n_cols, int64_t max_tile_elems);
// Calls fn(row_begin, tile) for consecutive row blocks, tile = closeness_tile(rows[row_begin:row_end], refs,
// padded_refs, distance) ([rows_in_block, M], never the whole N x M matrix). padded_refs must be given exactly when
// the distance is L2 and cdist_uses_mm(N, M). Works on any device: the GEMM is ATen's.
void for_each_closeness_tile(const at::Tensor& rows, const at::Tensor& refs, const at::Tensor& padded_refs,
                             const Distance& distance, int64_t max_tile_elems,
                             const std::function<void(int64_t, const at::Tensor&)>& fn);

// ---- label handling -------------------------------------------------------------------------------------------
// Labels as contiguous int64 on their device.
at::Tensor labels_int64(const at::Tensor& labels);

// Tile budget: 4M floats (16 MiB) per tile on the CPU, 64M (256 MiB) on CUDA.
constexpr int64_t kCpuTileElems = int64_t(1) << 22;
constexpr int64_t kCudaTileElems = int64_t(1) << 26;
inline int64_t tile_budget(const at::Tensor& t) { return t.is_cuda() ? kCudaTileElems : kCpuTileElems; }

}  // namespace slade
