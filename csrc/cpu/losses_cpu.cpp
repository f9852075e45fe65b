// CPU epilogues of the fused losses (loss_tiles.h): per-row accumulators (forward) and per-pair gradient weights
// (backward). Rows are independent, so results do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "epilogue_utils.h"
#include "slade/common.h"
#include "slade/loss_tiles.h"

namespace slade {
namespace cpu {
namespace {

using detail::for_each_verdict;
using detail::pair_margin_verdicts;

constexpr int64_t kRowGrain = 4;  // rows per parallel work item

// Calls fn(j, is_pos) for every pair row i (tile-local) sees, in ascending j per side.
struct RowPairs {
  const Tile& tile;
  const int64_t *row_labels = nullptr, *ref_labels = nullptr;
  const int64_t *pos_ptr = nullptr, *pos_cols = nullptr, *neg_ptr = nullptr, *neg_cols = nullptr;

  RowPairs(const Tile& t, const PairLists& l) : tile(t) {
    if (l.defined()) {
      pos_ptr = l.pos_ptr.data_ptr<int64_t>();
      pos_cols = l.pos_cols.data_ptr<int64_t>();
      neg_ptr = l.neg_ptr.data_ptr<int64_t>();
      neg_cols = l.neg_cols.data_ptr<int64_t>();
    } else {
      row_labels = t.row_labels.data_ptr<int64_t>();
      ref_labels = t.ref_labels.data_ptr<int64_t>();
    }
  }

  template <typename F>
  void visit(int64_t i, F&& fn) const {
    const int64_t gi = tile.row_begin + i;
    if (pos_ptr) {
      for (int64_t k = pos_ptr[gi]; k < pos_ptr[gi + 1]; ++k) fn(pos_cols[k], true);
      for (int64_t k = neg_ptr[gi]; k < neg_ptr[gi + 1]; ++k) fn(neg_cols[k], false);
      return;
    }
    const int64_t m = tile.sim.size(1), li = row_labels[i];
    const int64_t self_j = tile.exclude_self ? gi : -1;
    for (int64_t j = 0; j < m; ++j) {
      if (ref_labels[j] != li) {
        fn(j, false);
      } else if (j != self_j) {
        fn(j, true);
      }
    }
  }
};

// log(1 + sum exp(x_k)) over one side's terms, stable: shifted by M = max(0, max x_k).
struct LogSumExpOne {
  double max_term = 0.0, sum = 0.0;
  double value() const { return max_term + std::log(std::exp(-max_term) + sum); }
};

// Both labels as int32 for the branch-free loops (all pairs on closeness values), or unusable: pair lists, another
// rule reading, or a label beyond int32.
using Labels32 = detail::TileLabels32;
Labels32 loop_labels(const Tile& tile, const PairLists& lists, const LossRule& rule) {
  return Labels32(tile, rule.inverted && !lists.defined());
}

// The multi-similarity epilogues on int32 labels, in sweeps over the tile: the pairs' exponents written over the
// tile without branches, ATen's vectorised exp of the whole tile, then the row sums (forward) or the weights
// (backward). std::exp took about 6 ns a pair on the AMD host, most of each epilogue (benchmarks/RESULTS.md,
// "Backwards without recomputed tiles, and the multi-similarity loss's exponentials"). The terms are
// loss_pair_term's (loss_rules.h), restated per side; the sums keep each row's order (ascending j). The pair (i, i) of a self-comparison reads as the closeness whose
// positive term is -inf, so it has no maximum and exp 0.
template <typename T>
struct MultiSimilaritySweeps {
  const Labels32& labels;
  const int64_t b, m;
  T* sim;
  const T alpha, beta, base, self_value;

  MultiSimilaritySweeps(const Tile& tile, const LossRule& r, const Labels32& l)
      : labels(l), b(tile.sim.size(0)), m(tile.sim.size(1)), sim(tile.sim.data_ptr<T>()),
        alpha(T(r.alpha)), beta(T(r.beta)), base(T(r.base)),
        self_value(r.alpha > 0 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity()) {}

  // Row i's exponents minus shift[0] (positives) or shift[1] (negatives), over the row; returns its positives.
  int64_t write_exponents(int64_t i, int64_t self_j, const T shift[2]) {
    T* row = sim + i * m;
    const int32_t li = labels.rows[i];
    const int32_t* ref = labels.refs.data();
    if (self_j >= 0 && self_j < m) row[self_j] = self_value;
    int64_t same_count = 0;
    for (int64_t j = 0; j < m; ++j) {
      const T v = row[j];
      const bool same = ref[j] == li;
      row[j] = same ? alpha * (base - v) - shift[0] : beta * (v - base) - shift[1];
      same_count += same;
    }
    return same_count - (self_j >= 0 && self_j < m);
  }

  // max(0, largest exponent) of each side of row i, (i, i) already marked.
  void row_maxima(int64_t i, int64_t self_j, T out[2]) {
    T* row = sim + i * m;
    const int32_t li = labels.rows[i];
    const int32_t* ref = labels.refs.data();
    if (self_j >= 0 && self_j < m) row[self_j] = self_value;
    const T inf = std::numeric_limits<T>::infinity();
    T mp = T(0), mn = T(0);
    for (int64_t j = 0; j < m; ++j) {
      const T v = row[j];
      const bool same = ref[j] == li;
      const T as_pos = same ? alpha * (base - v) : -inf, as_neg = same ? -inf : beta * (v - base);
      mp = as_pos > mp ? as_pos : mp;
      mn = as_neg > mn ? as_neg : mn;
    }
    out[0] = mp;
    out[1] = mn;
  }
};

// Row gradients (RowGradients) from a tile of exp(term - max) after the sums: each pair's weight exp(term - lse) *
// d(term)/ds is e / (exp(-max) + sum) * d(term)/ds of its side, as loss_weights_impl's with a unit upstream
// gradient (to rounding); the negatives' gradient is one GEMM of the tile, the positives', which are few when the
// classes are many, are added pair by pair (or by a second GEMM past a sixteenth of the tile).
template <typename T>
void ms_row_gradients(const Tile& tile, const LossRule& rule, const Labels32& labels, const double* scale,
                      int64_t positives, RowGradients& grads, int64_t first_row) {
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1), d = grads.refs.size(1);
  T* sim = tile.sim.data_ptr<T>();
  const T dv[2] = {loss_pair_term_dv<T>(rule, true), loss_pair_term_dv<T>(rule, false)};
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* row = sim + i * m;
      const int32_t li = labels.rows[i];
      const int32_t* ref = labels.refs.data();
      const T w_pos = T(scale[2 * i]) * dv[0], w_neg = T(scale[2 * i + 1]) * dv[1];
      for (int64_t j = 0; j < m; ++j) row[j] *= ref[j] == li ? w_pos : w_neg;
    }
  });
  auto block = grads.out.narrow(0, tile.row_begin - first_row, b);  // [b, 2, d], contiguous
  const T* y = grads.refs.data_ptr<T>();
  const int64_t sy = grads.refs.stride(0);
  if (positives * 16 <= b * m) {
    T* pos_grads = block.data_ptr<T>();  // row i's positives' gradient at (2 i) d
    at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T* row = sim + i * m;
        T* g = pos_grads + 2 * i * d;
        const int32_t li = labels.rows[i];
        const int32_t* ref = labels.refs.data();
        for (int64_t j = 0; j < m; ++j) {
          if (ref[j] != li) continue;
          const T w = row[j];
          const T* yj = y + j * sy;
          for (int64_t t = 0; t < d; ++t) g[t] += w * yj[t];
          row[j] = T(0);
        }
      }
    });
  } else {
    auto pos_only = tile.sim.clone();
    at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        T *row = sim + i * m, *pos_row = pos_only.data_ptr<T>() + i * m;
        const int32_t li = labels.rows[i];
        const int32_t* ref = labels.refs.data();
        for (int64_t j = 0; j < m; ++j) {
          const bool same = ref[j] == li;
          row[j] = same ? T(0) : row[j];
          pos_row[j] = same ? pos_row[j] : T(0);
        }
      }
    });
    block.select(1, 0).add_(at::mm(pos_only, grads.refs));
  }
  block.select(1, 1).add_(at::mm(tile.sim, grads.refs));
}

template <typename T>
void ms_rows_by_sweeps(const Tile& tile, const LossRule& rule, const Labels32& labels, double* out,
                       RowGradients* grads, int64_t first_row) {
  MultiSimilaritySweeps<T> sweeps(tile, rule, labels);
  const int64_t b = sweeps.b, m = sweeps.m;
  std::vector<T> maxima(2 * b);
  std::vector<int64_t> positives(b);
  std::vector<double> scale(grads != nullptr ? 2 * b : 0);  // 1 / (exp(-max) + sum) of each row and side
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t self_j = tile.exclude_self ? tile.row_begin + i : -1;
      sweeps.row_maxima(i, self_j, maxima.data() + 2 * i);
      positives[i] = sweeps.write_exponents(i, self_j, maxima.data() + 2 * i);
    }
  });
  tile.sim.exp_();
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const T* row = sweeps.sim + i * m;
      const int32_t li = labels.rows[i];
      const int32_t* ref = labels.refs.data();
      LogSumExpOne side[2];
      double sum_pos = 0.0, sum_neg = 0.0;  // adding 0.0 leaves a sum as it is: each is its side's, in order
      for (int64_t j = 0; j < m; ++j) {
        const bool same = ref[j] == li;
        sum_pos += same ? double(row[j]) : 0.0;
        sum_neg += same ? 0.0 : double(row[j]);
      }
      side[0].max_term = double(maxima[2 * i]);
      side[1].max_term = double(maxima[2 * i + 1]);
      side[0].sum = sum_pos;
      side[1].sum = sum_neg;
      double* o = out + (tile.row_begin + i) * kLossRowState;
      o[0] = side[0].value();
      o[1] = side[1].value();
      o[2] = double(positives[i]);
      o[3] = double(m - positives[i] - (tile.exclude_self && tile.row_begin + i < m));
      if (grads != nullptr) {
        for (int k = 0; k < 2; ++k) scale[2 * i + k] = 1.0 / (std::exp(-side[k].max_term) + side[k].sum);
      }
    }
  });
  if (grads != nullptr) {
    int64_t total = 0;
    for (int64_t c : positives) total += c;
    ms_row_gradients<T>(tile, rule, labels, scale.data(), total, *grads, first_row);
  }
}

template <typename T>
void ms_weights_by_sweeps(Tile& tile, const LossRule& rule, const Labels32& labels, const double* state) {
  MultiSimilaritySweeps<T> sweeps(tile, rule, labels);
  const int64_t b = sweeps.b, m = sweeps.m;
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const double* st = state + (tile.row_begin + i) * kLossRowState;
      const T lse[2] = {T(st[2]), T(st[3])};
      sweeps.write_exponents(i, tile.exclude_self ? tile.row_begin + i : -1, lse);
    }
  });
  tile.sim.exp_();
  const T dv_pos = loss_pair_term_dv<T>(rule, true), dv_neg = loss_pair_term_dv<T>(rule, false);
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      T* row = sweeps.sim + i * m;
      const int32_t li = labels.rows[i];
      const int32_t* ref = labels.refs.data();
      const double* st = state + (tile.row_begin + i) * kLossRowState;
      const T grad_pos = T(st[0]), grad_neg = T(st[1]);
      for (int64_t j = 0; j < m; ++j) {  // as loss_weights_impl: grad * (exp * dv), 0 without a gradient
        const bool same = ref[j] == li;
        const T grad = same ? grad_pos : grad_neg, dv = same ? dv_pos : dv_neg;
        row[j] = grad == T(0) ? T(0) : grad * (row[j] * dv);
      }
      const int64_t self_j = tile.row_begin + i;
      if (tile.exclude_self && self_j < m) row[self_j] = T(0);
    }
  });
}

template <typename T>
void loss_rows_impl(const Tile& tile, const PairLists& lists, const LossRule& rule, double* out,
                    ActivePairs* active, int64_t first_row, RowGradients* grads) {
  const Labels32 labels = loop_labels(tile, lists, rule);
  const bool sweeps = labels.usable() && rule.kind == LossKind::MultiSimilarity;
  if (grads != nullptr && (!sweeps || tile.exclude_self)) grads->computed = false;  // the driver drops them
  if (sweeps) {
    return ms_rows_by_sweeps<T>(tile, rule, labels, out, grads != nullptr && grads->computed ? grads : nullptr,
                                first_row);
  }
  const RowPairs pairs(tile, lists);
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const T* sim = tile.sim.data_ptr<T>();
  // The contrastive rule over all pairs on closeness values is PairMargin's (epilogue_utils.h): its branch-free
  // verdicts on int32 labels find the pairs with a non-zero loss.
  const bool fast = labels.usable();
  const std::vector<int32_t>&row_labels32 = labels.rows, &ref_labels32 = labels.refs;
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    std::vector<uint8_t> verdict(fast ? m : 0);
    for (int64_t i = i0; i < i1; ++i) {
      const T* row = sim + i * m;
      double* o = out + (tile.row_begin + i) * kLossRowState;
      double count[2] = {0.0, 0.0};
      if (rule.kind == LossKind::MultiSimilarity) {
        LogSumExpOne side[2];  // [0] = pos, [1] = neg
        pairs.visit(i, [&](int64_t j, bool pos) {
          const double x = double(loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos));
          auto& s = side[pos ? 0 : 1];
          s.max_term = std::max(s.max_term, x);
          count[pos ? 0 : 1] += 1.0;
        });
        pairs.visit(i, [&](int64_t j, bool pos) {
          auto& s = side[pos ? 0 : 1];
          const T x = loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos);
          s.sum += double(std::exp(x - T(s.max_term)));
        });
        o[0] = side[0].value();
        o[1] = side[1].value();
      } else {
        double sum[2] = {0.0, 0.0};
        const bool record = active != nullptr && !active->dropped();
        std::vector<ActivePairs::Pair> recorded[2];
        auto add = [&](int64_t j, bool pos) {
          const T l = loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos);
          if (l > T(0)) {
            sum[pos ? 0 : 1] += double(l);
            count[pos ? 0 : 1] += 1.0;
            if (record) recorded[pos ? 0 : 1].push_back({j, double(row[j])});
          }
        };
        if (fast) {  // the same pairs in the same order: the verdicts only skip those without a loss
          int64_t n_pos, n_neg;
          pair_margin_verdicts<T>(row, row_labels32[i], ref_labels32.data(), m,
                                  tile.exclude_self ? tile.row_begin + i : -1, T(rule.pos_margin),
                                  T(rule.neg_margin), verdict.data(), n_pos, n_neg);
          for_each_verdict(verdict.data(), m, [&](int64_t j, uint8_t v) { add(j, v & 1); });
        } else {
          pairs.visit(i, add);
        }
        if (record) active->record(tile.row_begin + i - first_row, std::move(recorded[0]), std::move(recorded[1]));
        o[0] = sum[0];
        o[1] = sum[1];
      }
      o[2] = count[0];
      o[3] = count[1];
    }
  });
}

template <typename T>
void loss_weights_impl(Tile& tile, const PairLists& lists, const LossRule& rule, const double* state) {
  const Labels32 labels = loop_labels(tile, lists, rule);
  if (labels.usable() && rule.kind == LossKind::MultiSimilarity) {
    return ms_weights_by_sweeps<T>(tile, rule, labels, state);
  }
  const RowPairs pairs(tile, lists);
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  T* sim = tile.sim.data_ptr<T>();
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
    std::vector<std::pair<int64_t, T>> listed;  // (column, weight) of a pair-list row, before the row is cleared
    for (int64_t i = i0; i < i1; ++i) {
      T* row = sim + i * m;
      const double* st = state + (tile.row_begin + i) * kLossRowState;
      const T grad[2] = {T(st[0]), T(st[1])}, acc[2] = {T(st[2]), T(st[3])};
      auto weight = [&](int64_t j, bool pos) {
        const int k = pos ? 0 : 1;
        return grad[k] == T(0) ? T(0) : grad[k] * loss_pair_weight(rule, row[j], pos, acc[k]);
      };
      if (lists.defined()) {
        listed.clear();
        pairs.visit(i, [&](int64_t j, bool pos) { listed.emplace_back(j, weight(j, pos)); });
        std::fill(row, row + m, T(0));
        for (const auto& [j, w] : listed) row[j] += w;
      } else {
        // Every column is visited exactly once except a skipped self-pair, which gets weight 0.
        const int64_t gi = tile.row_begin + i;
        pairs.visit(i, [&](int64_t j, bool pos) { row[j] = weight(j, pos); });
        if (tile.exclude_self && gi < m) row[gi] = T(0);
      }
    }
  });
}

// The gradient of one recorded pair in its closeness c: w = d(loss)/dc as the tile epilogue weighs it
// (loss_weights_impl), then, for a distance, h with d(c)/dx = h (x - y) (c = -d: h = -1 / d, 0 where d = 0 as
// torch.cdist's backward; c = -d^2: h = -2). A similarity's is w itself, with d(c)/dx = y.
template <typename T>
T pair_coefficient(const LossRule& rule, const Distance& distance, const double* st, int k, double closeness) {
  const T grad = T(st[k]), acc = T(st[2 + k]), c = T(closeness);
  const T w = grad == T(0) ? T(0) : grad * loss_pair_weight(rule, c, k == 0, acc);
  if (distance.similarity) return w;
  if (distance.power == 2) return w * T(-2);
  return c == T(0) ? T(0) : w * (T(1) / c);
}

// out += h (a - b) over d columns, or h b when `similarity` (the gradient of a . b in a).
template <typename T>
inline void add_pair_gradient(T* out, const T* a, const T* b, T h, int64_t d, bool similarity) {
  if (similarity) {
    for (int64_t t = 0; t < d; ++t) out[t] += h * b[t];
  } else {
    for (int64_t t = 0; t < d; ++t) out[t] += h * (a[t] - b[t]);
  }
}

template <typename T>
void contrastive_pairs_backward_impl(const int64_t* ptr, const int64_t* cols, const double* closeness,
                                     const at::Tensor& rows, const at::Tensor& refs, const Distance& distance,
                                     const LossRule& rule, const double* state, at::Tensor& grad_rows,
                                     at::Tensor& grad_refs) {
  const int64_t n = rows.size(0), m = refs.size(0), d = rows.size(1), k_pairs = ptr[2 * n];
  // Row strides: the references may be a view of torch.cdist's padding (drivers.h), the rows a view of them.
  const T *x = rows.data_ptr<T>(), *y = refs.data_ptr<T>();
  const int64_t sx = rows.stride(0), sy = refs.stride(0);
  // Each pair's coefficient once (rows in parallel), with its row for the references' pass.
  std::vector<T> coef(k_pairs);
  std::vector<int64_t> pair_row(k_pairs);
  at::parallel_for(0, n, kRowGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      for (int k = 0; k < 2; ++k) {
        for (int64_t p = ptr[2 * i + k]; p < ptr[2 * i + k + 1]; ++p) {
          coef[p] = pair_coefficient<T>(rule, distance, state + i * kLossRowState, k, closeness[p]);
          pair_row[p] = i;
        }
      }
    }
  });
  if (grad_rows.defined()) {  // rows in parallel: each row's pairs are contiguous
    T* g = grad_rows.data_ptr<T>();
    const int64_t stride = grad_rows.stride(0);
    at::parallel_for(0, n, kRowGrain, [&](int64_t i0, int64_t i1) {
      for (int64_t p = ptr[2 * i0]; p < ptr[2 * i1]; ++p) {
        const int64_t i = pair_row[p];
        add_pair_gradient(g + i * stride, x + i * sx, y + cols[p] * sy, coef[p], d, distance.similarity);
      }
    });
  }
  if (grad_refs.defined()) {  // by column (a counting sort of the pairs), so that threads own disjoint references
    std::vector<int64_t> col_ptr(m + 1, 0), by_col(k_pairs);
    for (int64_t p = 0; p < k_pairs; ++p) ++col_ptr[cols[p] + 1];
    for (int64_t j = 0; j < m; ++j) col_ptr[j + 1] += col_ptr[j];
    std::vector<int64_t> next(col_ptr.begin(), col_ptr.end() - 1);
    for (int64_t p = 0; p < k_pairs; ++p) by_col[next[cols[p]]++] = p;
    T* g = grad_refs.data_ptr<T>();
    at::parallel_for(0, m, 64, [&](int64_t j0, int64_t j1) {
      for (int64_t j = j0; j < j1; ++j) {
        for (int64_t q = col_ptr[j]; q < col_ptr[j + 1]; ++q) {
          const int64_t p = by_col[q];
          add_pair_gradient(g + j * d, y + j * sy, x + pair_row[p] * sx, coef[p], d, distance.similarity);
        }
      }
    });
  }
}

void check_rows_out(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cpu() && t.scalar_type() == at::kDouble && t.is_contiguous() && t.dim() == 2 &&
                  t.size(1) == kLossRowState,
              name, ": expected a contiguous [N, 4] float64 CPU tensor");
}

}  // namespace

void ActivePairs::record(int64_t row, std::vector<Pair>&& pos, std::vector<Pair>&& neg) {
  const int64_t added = int64_t(pos.size() + neg.size());
  if (recorded_.fetch_add(added, std::memory_order_relaxed) + added > max_pairs_) {
    dropped_.store(true, std::memory_order_relaxed);
    return;
  }
  sides_[2 * row] = std::move(pos);
  sides_[2 * row + 1] = std::move(neg);
}

std::array<at::Tensor, 3> ActivePairs::tensors() {
  const auto longs = at::TensorOptions().dtype(at::kLong);
  if (dropped()) {
    sides_.clear();
    return {at::empty({0}, longs), at::empty({0}, longs), at::empty({0}, longs.dtype(at::kDouble))};
  }
  auto ptr = at::empty({int64_t(sides_.size()) + 1}, longs);
  int64_t* p = ptr.data_ptr<int64_t>();
  p[0] = 0;
  for (size_t s = 0; s < sides_.size(); ++s) p[s + 1] = p[s] + int64_t(sides_[s].size());
  auto cols = at::empty({p[sides_.size()]}, longs);
  auto closeness = at::empty({p[sides_.size()]}, longs.dtype(at::kDouble));
  int64_t* c = cols.data_ptr<int64_t>();
  double* v = closeness.data_ptr<double>();
  for (size_t s = 0; s < sides_.size(); ++s) {
    for (const Pair& pair : sides_[s]) {
      *c++ = pair.col;
      *v++ = pair.closeness;
    }
  }
  sides_.clear();
  return {ptr, cols, closeness};
}

void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out,
                    ActivePairs* active, int64_t first_row, RowGradients* grads) {
  check_rows_out(rows_out, "loss_rows_tile");
  TORCH_CHECK(active == nullptr || rule.kind == LossKind::Contrastive,
              "loss_rows_tile: only the contrastive rule records its active pairs");
  TORCH_CHECK(grads == nullptr || (rule.kind == LossKind::MultiSimilarity && grads->out.is_contiguous() &&
                                   grads->out.scalar_type() == tile.sim.scalar_type() &&
                                   grads->refs.stride(1) == 1 && grads->refs.scalar_type() == tile.sim.scalar_type()),
              "loss_rows_tile: row gradients are the multi-similarity rule's, in the tile's dtype");
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "loss_rows_tile", [&] {
    loss_rows_impl<scalar_t>(tile, lists, rule, rows_out.data_ptr<double>(), active, first_row, grads);
  });
}

void contrastive_pairs_backward(const std::array<at::Tensor, 3>& active, const at::Tensor& rows,
                                const at::Tensor& refs, const Distance& distance, const LossRule& rule,
                                const at::Tensor& state, at::Tensor grad_rows, at::Tensor grad_refs) {
  check_rows_out(state, "contrastive_pairs_backward");
  TORCH_CHECK(rows.stride(1) == 1 && refs.stride(1) == 1 && rows.scalar_type() == refs.scalar_type(),
              "contrastive_pairs_backward: rows and refs must have contiguous rows, of one dtype");
  TORCH_CHECK(active[0].numel() == 2 * rows.size(0) + 1 && state.size(0) == rows.size(0),
              "contrastive_pairs_backward: the record and the state must cover the query rows");
  for (const auto& g : {grad_rows, grad_refs}) {
    TORCH_CHECK(!g.defined() || (g.scalar_type() == rows.scalar_type() && g.stride(1) == 1),
                "contrastive_pairs_backward: gradients in the rows' dtype, rows contiguous");
  }
  TORCH_CHECK(!grad_refs.defined() || grad_refs.is_contiguous(), "contrastive_pairs_backward: grad_refs contiguous");
  AT_DISPATCH_FLOATING_TYPES(rows.scalar_type(), "contrastive_pairs_backward", [&] {
    contrastive_pairs_backward_impl<scalar_t>(active[0].data_ptr<int64_t>(), active[1].data_ptr<int64_t>(),
                                              active[2].data_ptr<double>(), rows, refs, distance, rule,
                                              state.data_ptr<double>(), grad_rows, grad_refs);
  });
}

void loss_weights_tile(Tile& tile, const PairLists& lists, const LossRule& rule, const at::Tensor& state) {
  check_rows_out(state, "loss_weights_tile");
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "loss_weights_tile", [&] {
    loss_weights_impl<scalar_t>(tile, lists, rule, state.data_ptr<double>());
  });
}

}  // namespace cpu
}  // namespace slade
