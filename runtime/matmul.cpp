// Matrix products. Batched operands broadcast over their leading dims; each
// 2-D product runs as a loop specialized for small shapes (oneDNN's call
// overhead would dominate the seed's 2x20x256 products) or, from
// kDnnlMinMacs multiply-adds up, as a cached oneDNN matmul primitive.
#include <dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "runtime/kernel_impl.h"

namespace bj::rt {

namespace {

constexpr int64_t kDnnlMinMacs = int64_t{1} << 18;  // 64^3

struct Gemm {
  int64_t m, n, k;
  bool ta, tb;
};

/// C[m,n] = A·B with A stored [m,k] ([k,m] if ta) and B stored [k,n] ([n,k] if tb).
void gemm_loops(const Gemm& g, const float* A, const float* B, float* C) {
  const int64_t M = g.m, N = g.n, K = g.k;
  std::vector<float> col;
  for (int64_t i = 0; i < M; ++i) {
    const float* a = A + i * K;
    if (g.ta) {  // gather column i of the stored [k,m] matrix
      col.resize(K);
      for (int64_t k = 0; k < K; ++k) col[k] = A[k * M + i];
      a = col.data();
    }
    float* c = C + i * N;
    if (g.tb) {  // rows of B are contiguous in k: dot products
      for (int64_t j = 0; j < N; ++j) {
        const float* b = B + j * K;
        float acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; ++k) acc += a[k] * b[k];
        c[j] = acc;
      }
    } else {  // axpy over rows of B: vectorizes over j
      std::fill(c, c + N, 0.0f);
      for (int64_t k = 0; k < K; ++k) {
        const float av = a[k];
        const float* b = B + k * N;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) c[j] += av * b[j];
      }
    }
  }
}

class DnnlMatmuls {
 public:
  void run(const Gemm& g, const float* A, const float* B, float* C) {
    using dnnl::memory;
    auto& p = primitive(g);
    thread_local dnnl::stream stream(engine_);
    memory a(p.first.src_desc(), engine_, const_cast<float*>(A));
    memory b(p.first.weights_desc(), engine_, const_cast<float*>(B));
    memory c(p.first.dst_desc(), engine_, C);
    p.second.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    stream.wait();
  }

 private:
  using Entry = std::pair<dnnl::matmul::primitive_desc, dnnl::matmul>;

  Entry& primitive(const Gemm& g) {
    using dnnl::memory;
    auto key = std::make_tuple(g.m, g.n, g.k, g.ta, g.tb);
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    memory::desc a({g.m, g.k}, memory::data_type::f32, g.ta ? memory::dims{1, g.m} : memory::dims{g.k, 1});
    memory::desc b({g.k, g.n}, memory::data_type::f32, g.tb ? memory::dims{1, g.k} : memory::dims{g.n, 1});
    memory::desc c({g.m, g.n}, memory::data_type::f32, memory::dims{g.n, 1});
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), engine_);
    return cache_.emplace(key, Entry{pd, dnnl::matmul(pd)}).first->second;
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mu_;
  std::map<std::tuple<int64_t, int64_t, int64_t, bool, bool>, Entry> cache_;  // entries never move
};

DnnlMatmuls& dnnl_matmuls() {
  static auto* m = new DnnlMatmuls;
  return *m;
}

}  // namespace

void kernel_Matmul(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Shape &sa = in[0].type.shape, &sb = in[1].type.shape, &so = out.type.shape;
  const int r = so.size();
  Gemm g{so[r - 2], so[r - 1], attrs.transpose_a ? sa.back(-2) : sa.back(-1), attrs.transpose_a, attrs.transpose_b};
  const float* A = static_cast<const float*>(in[0].data);
  const float* B = static_cast<const float*>(in[1].data);
  float* C = static_cast<float*>(out.data);
  if (so.numel() == 0) return;
  auto gemm = [&](const float* a, const float* b, float* c) {
    if (g.k == 0)
      std::fill(c, c + g.m * g.n, 0.0f);
    else if (g.m * g.n * g.k >= kDnnlMinMacs)
      dnnl_matmuls().run(g, a, b, c);
    else
      gemm_loops(g, a, b, c);
  };
  // Batch dims: walk the output's batch index, with broadcast strides (in matrices) for the operands.
  Shape batch(so.span().first(r - 2));
  Shape ba(sa.span().first(sa.size() - 2)), bb(sb.span().first(sb.size() - 2));
  Shape st_a = broadcast_strides(ba, batch), st_b = broadcast_strides(bb, batch);
  const int64_t mat_a = sa.back(-1) * sa.back(-2), mat_b = sb.back(-1) * sb.back(-2), mat_c = g.m * g.n;
  const int64_t nb = batch.numel();
  for (int64_t i = 0; i < nb; ++i) {
    int64_t rest = i, oa = 0, ob = 0;
    for (int d = batch.size() - 1; d >= 0; --d) {
      int64_t idx = rest % batch[d];
      rest /= batch[d];
      oa += idx * st_a[d];
      ob += idx * st_b[d];
    }
    gemm(A + oa * mat_a, B + ob * mat_b, C + i * mat_c);
  }
}

}  // namespace bj::rt
