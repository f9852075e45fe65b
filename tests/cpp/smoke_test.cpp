// C++ smoke test of the CMake build: the ops are reachable through the dispatcher and give known answers.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/torch.h>

#include <iostream>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::cout << (ok ? "ok   " : "FAIL ") << what << "\n";
  failures += ok ? 0 : 1;
}

}  // namespace

int main() {
  // Anchor 0: positive 1 (orthogonal, the hardest), negative 3 (closest); anchor 1 mirrors it.
  auto emb = torch::tensor({{1.0f, 0.0f}, {0.0f, 1.0f}, {0.9f, 0.1f}, {1.0f, 0.05f}});
  auto labels = torch::tensor({0, 0, 1, 1}, torch::kLong);

  auto batch_hard = c10::Dispatcher::singleton()
                        .findSchemaOrThrow("slade::mine_batch_hard", "")
                        .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                            const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                            const std::optional<at::Tensor>&, c10::string_view, int64_t, int64_t)>();
  // query rows (0, -1): every row of emb is a query
  auto [a, p, n] = batch_hard.call(emb, labels, std::nullopt, std::nullopt, "cosine", 0, -1);
  expect(a.numel() == 4, "batch hard: one triplet per anchor");
  expect(p[0].item<int64_t>() == 1 && n[0].item<int64_t>() == 3, "batch hard: hardest pair of anchor 0");
  auto [a2, p2, n2] = batch_hard.call(emb, labels, std::nullopt, std::nullopt, "cosine", 2, 4);
  expect(a2.numel() == 2 && a2[0].item<int64_t>() == 2, "batch hard: query rows 2..3 against all rows");

  auto similarity = c10::Dispatcher::singleton()
                        .findSchemaOrThrow("slade::basis_similarity", "")
                        .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&)>();
  auto s = similarity.call(emb, torch::eye(2), std::nullopt);
  expect(s.sizes() == at::IntArrayRef({4, 4}), "basis similarity: shape");
  expect(std::abs(s[0][1].item<float>()) < 1e-6 && std::abs(s[2][2].item<float>() - 1.0f) < 1e-6,
         "basis similarity: identity basis gives cosine similarity");

  bool refused = false;
  try {
    batch_hard.call(emb, labels.slice(0, 0, 3), std::nullopt, std::nullopt, "cosine", 0, -1);
  } catch (const c10::Error& e) {
    refused = std::string(e.what()).find("labels has length 3") != std::string::npos;
  }
  expect(refused, "bad label length is refused with the argument named");
  return failures == 0 ? 0 : 1;
}
