// Finite-difference gradient checks. The loss is sum(f(inputs) * R) for a
// fixed random R, evaluated in double on the host from f's f32 output;
// central differences with step eps against autograd's gradients.
#pragma once

#include "tests/helpers.h"

namespace bj::test {

using Fn = std::function<Tensor(const std::vector<Tensor>&)>;

struct GradTolerance {
  double eps = 1e-2;
  double rtol = 1e-2;
  double atol = 1e-3;
};

/// loss = sum(out * r) in double.
inline double weighted_sum(const Tensor& out, const std::vector<double>& r) {
  auto v = values(out);
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * r[i];
  return s;
}

/// Checks d(sum(f(xs) * R))/dx for every element of every input against central differences.
inline void gradcheck(const Fn& f, const std::vector<Tensor>& inputs, GradTolerance tol = {}) {
  // Analytic.
  std::vector<Tensor> xs;
  for (const Tensor& x : inputs) xs.push_back(x.clone().detach().set_requires_grad(x.dtype() == kF32));
  Tensor out = f(xs);
  std::vector<double> r(out.numel());
  for (size_t i = 0; i < r.size(); ++i) r[i] = 0.5 + 0.37 * double((i * 7919) % 13) / 13.0;  // fixed, uneven weights
  std::vector<float> rf(r.begin(), r.end());
  (out * tensor(rf, out.shape())).sum().backward();
  // Numeric.
  for (size_t k = 0; k < xs.size(); ++k) {
    if (xs[k].dtype() != kF32) continue;
    REQUIRE(xs[k].grad().defined());
    auto analytic = values(xs[k].grad());
    for (int64_t j = 0; j < xs[k].numel(); ++j) {
      auto eval = [&](double delta) {
        NoGradGuard no_grad;
        std::vector<Tensor> ys;
        for (const Tensor& x : xs) ys.push_back(x.detach().clone());
        ys[k].mutable_data<float>()[j] += static_cast<float>(delta);
        return weighted_sum(f(ys), r);
      };
      double numeric = (eval(tol.eps) - eval(-tol.eps)) / (2 * tol.eps);
      INFO("input " << k << " element " << j << ": autograd " << analytic[j] << ", finite differences " << numeric);
      CHECK(std::fabs(analytic[j] - numeric) <= tol.atol + tol.rtol * std::fabs(numeric));
    }
  }
}

}  // namespace bj::test
