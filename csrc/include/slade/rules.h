// The per-pair rules of every epilogue, written once for host and device so that CPU and CUDA kernels cannot
// drift apart. T is the tile's scalar type (float or double); comparisons happen in T, as pytorch-metric-learning
// does them in the embeddings' dtype.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "slade/tiles.h"

namespace slade {

// Cosine similarity s -> the value the rule compares: s itself (inverted) or the L2 distance of unit vectors.
template <typename T>
C10_HOST_DEVICE inline T closeness_value(T s, bool inverted) {
  if (inverted) return s;
  T d = T(2) - T(2) * s;
#ifdef __CUDA_ARCH__
  return d > T(0) ? sqrt(d) : T(0);
#else
  return d > T(0) ? std::sqrt(d) : T(0);
#endif
}

// Mining candidates (pytorch-metric-learning): positive = same label and not the pair (i, i) of a self-comparison;
// negative = different label. Label values carry no special meaning here.
C10_HOST_DEVICE inline bool is_pos_candidate(int64_t li, int64_t lj, bool self_pair) { return li == lj && !self_pair; }
C10_HOST_DEVICE inline bool is_neg_candidate(int64_t li, int64_t lj) { return li != lj; }

// Pair statistics (docs/method.md): pairs with a negative label are ignored, and so is (i, i) of a self-comparison.
C10_HOST_DEVICE inline bool stats_pair_counts(int64_t li, int64_t lj, bool self_pair) {
  return li >= 0 && lj >= 0 && !self_pair;
}

// Extremes of a row's candidate values, needed by the multi-similarity rule.
template <typename T>
struct RowExtrema {
  T min_pos, max_pos, min_neg, max_neg;
  C10_HOST_DEVICE static RowExtrema empty() {
    const T inf = std::numeric_limits<T>::infinity();
    return {inf, -inf, inf, -inf};
  }
  C10_HOST_DEVICE void add(T v, bool pos, bool neg) {
    if (pos) {
      min_pos = v < min_pos ? v : min_pos;
      max_pos = v > max_pos ? v : max_pos;
    }
    if (neg) {
      min_neg = v < min_neg ? v : min_neg;
      max_neg = v > max_neg ? v : max_neg;
    }
  }
  C10_HOST_DEVICE void merge(const RowExtrema& o) {
    min_pos = o.min_pos < min_pos ? o.min_pos : min_pos;
    max_pos = o.max_pos > max_pos ? o.max_pos : max_pos;
    min_neg = o.min_neg < min_neg ? o.min_neg : min_neg;
    max_neg = o.max_neg > max_neg ? o.max_neg : max_neg;
  }
};

// Whether the pair rule needs the row's extrema first (a two-pass row).
C10_HOST_DEVICE inline bool rule_needs_extrema(const PairRule& rule) {
  return rule.kind == PairRuleKind::MultiSimilarity;
}

// Decides whether pair (i, j) is selected as a positive and/or a negative (tiles.h documents each rule).
// li / lj are ignored by the literal confident rule (pass anything).
template <typename T>
C10_HOST_DEVICE inline void select_pair(const PairRule& rule, T v, int64_t li, int64_t lj, bool self_pair,
                                        const RowExtrema<T>& e, bool& pos, bool& neg) {
  pos = false;
  neg = false;
  switch (rule.kind) {
    case PairRuleKind::MultiSimilarity: {
      const T eps = T(rule.epsilon);
      if (is_pos_candidate(li, lj, self_pair)) pos = rule.inverted ? (v - eps < e.max_neg) : (v + eps > e.min_neg);
      if (is_neg_candidate(li, lj)) neg = rule.inverted ? (v + eps > e.min_pos) : (v - eps < e.max_pos);
      break;
    }
    case PairRuleKind::PairMargin: {
      const T pm = T(rule.pos_margin), nm = T(rule.neg_margin);
      if (is_pos_candidate(li, lj, self_pair)) pos = rule.inverted ? (v < pm) : (v > pm);
      if (is_neg_candidate(li, lj)) neg = rule.inverted ? (v > nm) : (v < nm);
      break;
    }
    case PairRuleKind::Confident: {
      if (self_pair) break;
      pos = v >= T(rule.t_pos) && (!rule.agree || (li == lj && li >= 0));
      neg = v <= T(rule.t_neg) && (!rule.agree || (li != lj && li >= 0 && lj >= 0));
      break;
    }
  }
}

// pytorch-metric-learning's TripletMarginMiner condition (tiles.h).
template <typename T>
C10_HOST_DEVICE inline bool triplet_selected(const TripletRule& rule, T v_ap, T v_an) {
  const T tm = rule.inverted ? v_ap - v_an : v_an - v_ap;
  const T margin = T(rule.margin);
  switch (rule.type) {
    case TripletType::All:
      return tm <= margin;
    case TripletType::Hard:
      return tm <= margin && tm <= T(0);
    case TripletType::SemiHard:
      return tm <= margin && tm > T(0);
    case TripletType::Easy:
      return tm > margin;
  }
  return false;
}

// Batch hard: is v a harder positive / negative than the current best? Strict, so ties keep the smaller index.
template <typename T>
C10_HOST_DEVICE inline bool harder_positive(T v, T best, bool inverted) { return inverted ? v < best : v > best; }
template <typename T>
C10_HOST_DEVICE inline bool harder_negative(T v, T best, bool inverted) { return inverted ? v > best : v < best; }

}  // namespace slade
