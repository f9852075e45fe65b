// CPU epilogues of the fused losses (loss_tiles.h): per-row accumulators (forward) and per-pair gradient weights
// (backward). Rows are independent, so results do not depend on the number of threads.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "slade/loss_tiles.h"

namespace slade {
namespace cpu {
namespace {

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

template <typename T>
void loss_rows_impl(const Tile& tile, const PairLists& lists, const LossRule& rule, double* out) {
  const RowPairs pairs(tile, lists);
  const int64_t b = tile.sim.size(0), m = tile.sim.size(1);
  const T* sim = tile.sim.data_ptr<T>();
  at::parallel_for(0, b, kRowGrain, [&](int64_t i0, int64_t i1) {
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
        pairs.visit(i, [&](int64_t j, bool pos) {
          const T l = loss_pair_term(rule, closeness_value(row[j], rule.inverted), pos);
          if (l > T(0)) {
            sum[pos ? 0 : 1] += double(l);
            count[pos ? 0 : 1] += 1.0;
          }
        });
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

void check_rows_out(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_cpu() && t.scalar_type() == at::kDouble && t.is_contiguous() && t.dim() == 2 &&
                  t.size(1) == kLossRowState,
              name, ": expected a contiguous [N, 4] float64 CPU tensor");
}

}  // namespace

void loss_rows_tile(const Tile& tile, const PairLists& lists, const LossRule& rule, at::Tensor& rows_out) {
  check_rows_out(rows_out, "loss_rows_tile");
  AT_DISPATCH_FLOATING_TYPES(tile.sim.scalar_type(), "loss_rows_tile", [&] {
    loss_rows_impl<scalar_t>(tile, lists, rule, rows_out.data_ptr<double>());
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
