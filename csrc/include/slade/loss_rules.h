// Per-pair math of the fused losses (pytorch-metric-learning's MultiSimilarityLoss and ContrastiveLoss), written once
// for host and device so the CPU and CUDA epilogues cannot drift apart. T is the tile's scalar type; the row
// accumulators are float64 on the CPU and the tile type on CUDA (see each epilogue).
//
// A pair's "value" v is its closeness (the drivers pass inverted = true: a dot product, or a distance negated with
// base and margins negated too, tiles.h) or, unused by the drivers, the L2 distance of unit vectors sqrt(max(2 -
// 2 s, 0)) (closeness_value in rules.h). PML's distance.margin(x, y) is y - x when inverted, else x - y.
//   MultiSimilarity, per row: pos_lse = log(1 + sum_pos exp(alpha * margin(v, base))),
//                             neg_lse = log(1 + sum_neg exp(beta * margin(base, v)));
//                             row loss = pos_lse / alpha + neg_lse / beta.
//   Contrastive, per pair:    pos: relu(margin(v, pos_margin)), neg: relu(margin(neg_margin, v));
//                             rows accumulate the sum and the count of the non-zero pair losses of each side.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>

#include "slade/rules.h"

namespace slade {

enum class LossKind { MultiSimilarity, Contrastive };

struct LossRule {
  LossKind kind = LossKind::MultiSimilarity;
  bool inverted = true;  // closeness values (true, what the drivers pass) or L2 distance of unit vectors (false)
  double alpha = 2.0, beta = 50.0, base = 0.5;       // MultiSimilarity
  double pos_margin = 0.0, neg_margin = 1.0;         // Contrastive
};

// PML's distance.margin(x, y).
template <typename T>
C10_HOST_DEVICE inline T pml_margin(T x, T y, bool inverted) {
  return inverted ? y - x : x - y;
}

// The pair's term: the exponent (MultiSimilarity) or the pair loss before relu (Contrastive).
template <typename T>
C10_HOST_DEVICE inline T loss_pair_term(const LossRule& r, T v, bool pos) {
  if (r.kind == LossKind::MultiSimilarity) {
    return pos ? T(r.alpha) * pml_margin(v, T(r.base), r.inverted) : T(r.beta) * pml_margin(T(r.base), v, r.inverted);
  }
  return pos ? pml_margin(v, T(r.pos_margin), r.inverted) : pml_margin(T(r.neg_margin), v, r.inverted);
}

// d(term)/d(v): the sign of v in the margin times the exponent's scale.
template <typename T>
C10_HOST_DEVICE inline T loss_pair_term_dv(const LossRule& r, bool pos) {
  const T sign = (pos == r.inverted) ? T(-1) : T(1);
  if (r.kind == LossKind::MultiSimilarity) return sign * T(pos ? r.alpha : r.beta);
  return sign;
}

// d(v)/d(s): 1 for cosine; for v = sqrt(2 - 2 s) it is -1 / v, and 0 where v = 0 (as torch.cdist's backward).
template <typename T>
C10_HOST_DEVICE inline T value_ds(T v, bool inverted) {
  if (inverted) return T(1);
  return v > T(0) ? T(-1) / v : T(0);
}

C10_HOST_DEVICE inline double loss_exp(double x) {
#ifdef __CUDA_ARCH__
  return exp(x);
#else
  return std::exp(x);
#endif
}
C10_HOST_DEVICE inline float loss_exp(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  return std::exp(x);
#endif
}

// d(row accumulator)/d(s) of one pair, given the row's saved state:
//   MultiSimilarity: acc = lse, d lse / d term = exp(term - lse);  Contrastive: acc = sum of relu, d/d term = [term > 0].
template <typename T>
C10_HOST_DEVICE inline T loss_pair_weight(const LossRule& r, T s, bool pos, T lse) {
  const T v = closeness_value(s, r.inverted);
  const T term = loss_pair_term(r, v, pos);
  const T d_term = (r.kind == LossKind::MultiSimilarity) ? loss_exp(term - lse) : (term > T(0) ? T(1) : T(0));
  return d_term * loss_pair_term_dv<T>(r, pos) * value_ds(v, r.inverted);
}

}  // namespace slade
