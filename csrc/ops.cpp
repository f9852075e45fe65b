// The one place where the `slade` op schemas live, plus (in Python builds) the pybind11 module that reports how
// it was built. CMake builds for C++ users compile the same file without the pybind11 part.
// Kernels are registered per device in csrc/common/<family>.cpp (drivers shared by CPU and CUDA, which differ only
// in their tile epilogues: csrc/cpu/<family>_cpu.cpp, csrc/cuda/<family>_cuda.cu). Families: basis (similarity and
// pair statistics), mining (the miners and confident-pair selection), losses (the fused losses).
// Backward ops take output_mask (one flag per differentiable input, as ATen's backward ops): a gradient not asked
// for is not computed and comes back as an empty [0] tensor.
#include <torch/library.h>
#include <torch/version.h>

#include <string>

TORCH_LIBRARY(slade, m) {
  // ---- basis similarity: s_ij = cos(W f_i, W g_j) ----
  m.def("basis_similarity(Tensor emb, Tensor basis, Tensor? ref_emb=None) -> Tensor");
  m.def(
      "basis_similarity_backward(Tensor grad, Tensor emb, Tensor basis, Tensor? ref_emb=None, "
      "bool[3] output_mask=[True, True, True]) -> (Tensor, Tensor, Tensor)");
  m.def(
      "basis_pair_stats(Tensor emb, Tensor basis, Tensor labels, Tensor? ref_emb=None, Tensor? ref_labels=None, "
      "int query_begin=0, int query_end=-1) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "basis_pair_stats_backward(Tensor grad_stats, Tensor emb, Tensor basis, Tensor labels, Tensor? ref_emb, "
      "Tensor? ref_labels, Tensor stats, int query_begin=0, int query_end=-1, bool[3] output_mask=[True, True, True]) -> (Tensor, Tensor, Tensor)");
  // ---- hard-pair mining (pytorch-metric-learning rules); ref_emb=None means "against itself, no self-pairs" ----
  // query_begin / query_end (here and in the pair statistics, selection and losses; -1 = the last row): with
  // ref_emb=None, only the rows [query_begin, query_end) of emb are queries, against all of emb (one rank's share of
  // a global batch); outputs index emb's rows. max_pairs (-1: none) caps the number of pairs (both sides) or
  // triplets an op may return: past it the op stops with an error instead of taking the memory.
  m.def(
      "mine_multi_similarity(Tensor emb, Tensor labels, Tensor? ref_emb=None, Tensor? ref_labels=None, "
      "float epsilon=0.1, str distance=\"cosine\", int query_begin=0, int query_end=-1, int max_pairs=-1) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "mine_pair_margin(Tensor emb, Tensor labels, Tensor? ref_emb=None, Tensor? ref_labels=None, "
      "float pos_margin=0.2, float neg_margin=0.8, str distance=\"cosine\", int query_begin=0, int query_end=-1, "
      "int max_pairs=-1) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "mine_batch_hard(Tensor emb, Tensor labels, Tensor? ref_emb=None, Tensor? ref_labels=None, "
      "str distance=\"cosine\", int query_begin=0, int query_end=-1) -> (Tensor, Tensor, Tensor)");
  m.def(
      "mine_triplet_margin(Tensor emb, Tensor labels, Tensor? ref_emb=None, Tensor? ref_labels=None, "
      "float margin=0.2, str type_of_triplets=\"all\", int max_triplets_per_anchor=-1, str distance=\"cosine\", "
      "int query_begin=0, int query_end=-1, int max_pairs=-1) -> (Tensor, Tensor, Tensor)");
  // ---- confident-pair selection (docs/method.md), driven by the mining family ----
  m.def(
      "select_confident_pairs(Tensor emb, Tensor basis, float t_pos, float t_neg, Tensor? pseudo_labels=None, "
      "str mode=\"literal\", int query_begin=0, int query_end=-1, int max_pairs=-1) -> (Tensor, Tensor, Tensor, Tensor)");
  // The same with 0-dim tensor thresholds (a FeatureBasis keeps them as buffers): torch.compile traces a call
  // that hands them over without reading them on the host.
  m.def(
      "select_confident_pairs_tensor_thresholds(Tensor emb, Tensor basis, Tensor t_pos, Tensor t_neg, "
      "Tensor? pseudo_labels=None, str mode=\"literal\", int query_begin=0, int query_end=-1, int max_pairs=-1) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  // ---- fused losses (pytorch-metric-learning's MultiSimilarityLoss, ContrastiveLoss), csrc/common/losses.cpp ----
  // Pairs come from the labels (all pairs) or from CSR pair lists (pos_ptr/pos_cols, neg_ptr/neg_cols). Output:
  // [N, 4] float64 per-row state (pos_acc, neg_acc, pos_count, neg_count), documented in slade/loss_tiles.h.
  // The contrastive forward also returns, with keep_active on the CPU, the record of its pairs with a non-zero loss
  // (ptr, cols, closeness: cpu::ActivePairs), and the multi-similarity forward, with keep_row_grads, its rows'
  // gradients (cpu::RowGradients): their backwards then take those instead of recomputing the tiles.
  m.def(
      "multi_similarity_loss_rows(Tensor emb, Tensor? labels, Tensor? ref_emb, Tensor? ref_labels, "
      "Tensor? pos_ptr, Tensor? pos_cols, Tensor? neg_ptr, Tensor? neg_cols, float alpha=2, float beta=50, "
      "float base=0.5, str distance=\"cosine\", int query_begin=0, int query_end=-1, bool keep_row_grads=False) "
      "-> (Tensor, Tensor)");
  m.def(
      "multi_similarity_loss_rows_backward(Tensor grad_rows, Tensor rows, Tensor emb, Tensor? labels, "
      "Tensor? ref_emb, Tensor? ref_labels, Tensor? pos_ptr, Tensor? pos_cols, Tensor? neg_ptr, Tensor? neg_cols, "
      "float alpha, float beta, float base, str distance, int query_begin=0, int query_end=-1, "
      "bool[2] output_mask=[True, True], Tensor? row_grads=None) -> (Tensor, Tensor)");
  m.def(
      "contrastive_loss_rows(Tensor emb, Tensor? labels, Tensor? ref_emb, Tensor? ref_labels, "
      "Tensor? pos_ptr, Tensor? pos_cols, Tensor? neg_ptr, Tensor? neg_cols, float pos_margin=0, "
      "float neg_margin=1, str distance=\"l2\", int query_begin=0, int query_end=-1, bool keep_active=False) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "contrastive_loss_rows_backward(Tensor grad_rows, Tensor rows, Tensor emb, Tensor? labels, "
      "Tensor? ref_emb, Tensor? ref_labels, Tensor? pos_ptr, Tensor? pos_cols, Tensor? neg_ptr, Tensor? neg_cols, "
      "float pos_margin, float neg_margin, str distance, int query_begin=0, int query_end=-1, "
      "bool[2] output_mask=[True, True], Tensor? active_ptr=None, Tensor? active_cols=None, "
      "Tensor? active_closeness=None) -> (Tensor, Tensor)");
}

#ifdef TORCH_EXTENSION_NAME  // built as the Python module slade_ext._C (setup.py or the JIT loader)
#include <torch/extension.h>

namespace {

pybind11::dict build_facts() {
  pybind11::dict facts;
#ifdef WITH_CUDA
  facts["cuda_compiled"] = true;
  facts["cuda_archs"] = std::string(SLADE_CUDA_ARCHS);
#else
  facts["cuda_compiled"] = false;
  facts["cuda_archs"] = std::string();
#endif
#if AT_PARALLEL_OPENMP
  facts["openmp"] = true;
#else
  facts["openmp"] = false;
#endif
  facts["torch_version"] = std::string(TORCH_VERSION);
  return facts;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "slade_ext compiled kernels; the ops live in torch.ops.slade";
  m.def("build_facts", &build_facts, "How this module was built: CUDA, architectures, OpenMP, torch version");
}
#endif  // TORCH_EXTENSION_NAME
