// Matrix products. Batched operands broadcast over their leading dims; each
// 2-D product runs as a loop specialized for small shapes (oneDNN's call
// overhead would dominate the seed's 2x20x256 products) or, from
// kDnnlMinMacs multiply-adds up, as a cached oneDNN matmul primitive (one
// batched primitive for a batch of such products that broadcasts nothing,
// such as attention's per-head products).
#include <dnnl.hpp>

#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "runtime/dnnl_scratch.h"
#include "runtime/kernel_impl.h"

// An AVX2 build of a loop next to the default one, chosen when the program loads (an ifunc).
// g++ only: clang 19 (the fuzzing builds) leaves the library code such a function inlines
// undefined at link time. Not under ThreadSanitizer: its runtime is not ready when the loader
// runs the chooser, and the program crashes before main.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define BJ_AVX2_CLONE __attribute__((target_clones("avx2", "default")))
#else
#define BJ_AVX2_CLONE
#endif

namespace bj::rt {

namespace {


/// C[m,n] = A·B with A stored [m,k] ([k,m] if ta) and B stored [k,n] ([n,k] if tb), each element
/// summed in an order codegen reproduces for guard cones: the canonical order (kernels.h) for
/// dot products (tb), increasing k from -0 otherwise. Compiled for AVX2 too (chosen at load time
/// where the CPU has it): wider vectors, the same roundings in the same order (no fused
/// multiply-adds), so the same results.
BJ_AVX2_CLONE void gemm_loops(const FusedMatmul& g, const float* A, const float* B, float* C) {
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
        c[j] = canonical_sum(a, b, K);
      }
    } else {  // axpy over rows of B, 16 columns at a time in registers; each c[i][j] sums over k in order from -0
      constexpr int64_t kCols = 16;
      int64_t j0 = 0;
      for (; j0 + kCols <= N; j0 += kCols) {
        float acc[kCols];
        for (int64_t j = 0; j < kCols; ++j) acc[j] = -0.0f;
        for (int64_t k = 0; k < K; ++k) {
          const float av = a[k];
          const float* b = B + k * N + j0;
          for (int64_t j = 0; j < kCols; ++j) acc[j] += av * b[j];
        }
        for (int64_t j = 0; j < kCols; ++j) c[j0 + j] = acc[j];
      }
      if (j0 < N) {
        std::fill(c + j0, c + N, -0.0f);
        for (int64_t k = 0; k < K; ++k) {
          const float av = a[k];
          const float* b = B + k * N;
#pragma omp simd
          for (int64_t j = j0; j < N; ++j) c[j] += av * b[j];
        }
      }
    }
  }
}

/// oneDNN matmul primitives, created once per distinct product and kept.
class DnnlMatmuls {
 public:
  using Key = std::tuple<int64_t, int64_t, int64_t, bool, bool, bool, bool, int64_t>;
  struct Entry {
    dnnl::matmul::primitive_desc pd;
    Primitive prim;
    dnnl::memory::desc plain_b;
    Primitive pack;  ///< plain_b -> the weights layout pd chose (when packed_b)
  };

  /// The primitive for f, or with batch > 1 for `batch` products of f's shape whose operands and
  /// results follow one another in memory (no bias, B as stored).
  const Entry& primitive(const FusedMatmul& f, int64_t batch = 1) {
    using dnnl::memory;
    Key key{f.m, f.n, f.k, f.ta, f.tb, f.bias, f.packed_b, batch};
    std::lock_guard lock(mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    const auto f32 = memory::data_type::f32;
    if (batch > 1) {
      memory::desc a({batch, f.m, f.k}, f32, f.ta ? memory::dims{f.m * f.k, 1, f.m} : memory::dims{f.m * f.k, f.k, 1});
      memory::desc b({batch, f.k, f.n}, f32, f.tb ? memory::dims{f.k * f.n, 1, f.k} : memory::dims{f.k * f.n, f.n, 1});
      memory::desc c({batch, f.m, f.n}, f32, memory::dims{f.m * f.n, f.n, 1});
      dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), dnnl_attr(), engine_);
      return cache_.emplace(key, Entry{pd, Primitive::make<dnnl::matmul>(pd), b, {}}).first->second;
    }
    memory::desc a({f.m, f.k}, f32, f.ta ? memory::dims{1, f.m} : memory::dims{f.k, 1});
    memory::desc b({f.k, f.n}, f32, f.tb ? memory::dims{1, f.k} : memory::dims{f.n, 1});
    memory::desc c({f.m, f.n}, f32, memory::dims{f.n, 1});
    memory::desc wanted_b = f.packed_b ? memory::desc({f.k, f.n}, f32, memory::format_tag::any) : b;
    auto desc = f.bias ? dnnl::matmul::desc(a, wanted_b, memory::desc({1, f.n}, f32, memory::dims{f.n, 1}), c)
                       : dnnl::matmul::desc(a, wanted_b, c);
    const dnnl::primitive_attr attr = dnnl_attr();
    dnnl::matmul::primitive_desc pd(desc, attr, engine_);
    Entry e{pd, Primitive::make<dnnl::matmul>(pd), b, {}};
    if (f.packed_b)
      e.pack = Primitive::make<dnnl::reorder>(dnnl::reorder::primitive_desc(engine_, b, engine_, pd.weights_desc(), attr));
    return cache_.emplace(key, std::move(e)).first->second;
  }

  void run(const FusedMatmul& f, const float* A, const void* B, const float* bias, float* C, int64_t batch = 1) {
    using dnnl::memory;
    if (batch == 1 && !f.packed_b && transposed_is_faster(f)) return run_transposed(f, A, static_cast<const float*>(B), C);
    const Entry& p = primitive(f, batch);
    thread_local dnnl::stream stream(engine_);
    // Each thread's memory objects for each primitive, made once and pointed at this call's
    // buffers: making them per call (a few allocations each) cost microseconds per product.
    struct Bound {
      memory a, b, c, bias;
      std::unordered_map<int, memory> args;
    };
    thread_local std::unordered_map<const Entry*, Bound> bound;
    auto [it, made] = bound.try_emplace(&p);
    Bound& m = it->second;
    if (made) {
      m.a = memory(p.pd.src_desc(), engine_, const_cast<float*>(A));
      m.b = memory(p.pd.weights_desc(), engine_, const_cast<void*>(B));
      m.c = memory(p.pd.dst_desc(), engine_, C);
      m.args = {{DNNL_ARG_SRC, m.a}, {DNNL_ARG_WEIGHTS, m.b}, {DNNL_ARG_DST, m.c}};
      if (f.bias) {
        m.bias = memory(p.pd.bias_desc(), engine_, const_cast<float*>(bias));
        m.args.emplace(DNNL_ARG_BIAS, m.bias);
      }
    } else {
      m.a.set_data_handle(const_cast<float*>(A));
      m.b.set_data_handle(const_cast<void*>(B));
      m.c.set_data_handle(C);
      if (f.bias) m.bias.set_data_handle(const_cast<float*>(bias));
    }
    const OneThreadIf one(batch * f.m * f.n * f.k < kDnnlParallelMacs);
    p.prim.execute(stream, m.args);
    stream.wait();
  }

  /// oneDNN's kernels run along a row of C 16 columns at a time: a product with a few columns
  /// more than a multiple of 16 and many rows wastes lanes and runs at half speed (a first layer's
  /// weight gradient g^T x, [256, 512]·[512, 20]: 54 us, 95 GFLOP/s on a Zen 5). Its transpose
  /// C^T = op(B)^T op(A)^T has many columns (26 us), and when A is read transposed, op(A)^T reads
  /// it as stored. (With B read as stored, oneDNN would copy it transposed: not faster.)
  static bool transposed_is_faster(const FusedMatmul& f) {
    return f.ta && !f.bias && f.n < 32 && f.n % 16 != 0 && f.m >= 8 * f.n;
  }

  /// C = op(A) op(B) as the transpose of op(B)^T op(A)^T, computed into scratch.
  void run_transposed(const FusedMatmul& f, const float* A, const float* B, float* C) {
    const FusedMatmul t{f.n, f.m, f.k, !f.tb, !f.ta, false, false};
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(f.m * f.n));
    const float* T = scratch.data();
    run(t, B, A, nullptr, scratch.data());
    for (int64_t i = 0; i < f.m; ++i)
      for (int64_t j = 0; j < f.n; ++j) C[i * f.n + j] = T[j * f.m + i];
  }

  void pack(const FusedMatmul& f, const float* B, void* packed) {
    const Entry& p = primitive(f);
    thread_local dnnl::stream stream(engine_);
    dnnl::memory src(p.plain_b, engine_, const_cast<float*>(B)), dst(p.pd.weights_desc(), engine_, packed);
    p.pack.execute(stream, src, dst);
    stream.wait();
  }

  size_t packed_bytes(const FusedMatmul& f) { return primitive(f).pd.weights_desc().get_size(); }

 private:
  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  std::mutex mu_;
  std::map<Key, Entry> cache_;  // entries never move
};

DnnlMatmuls& dnnl_matmuls() {
  static auto* m = new DnnlMatmuls;
  return *m;
}

}  // namespace

void kernel_Matmul(Inputs in, const ir::OpAttrs& attrs, const View& out) {
  const Shape &sa = in[0].type.shape, &sb = in[1].type.shape, &so = out.type.shape;
  const int r = so.size();
  FusedMatmul g{so[r - 2], so[r - 1], attrs.transpose_a ? sa.back(-2) : sa.back(-1), attrs.transpose_a, attrs.transpose_b};
  const float* A = static_cast<const float*>(in[0].data);
  const float* B = static_cast<const float*>(in[1].data);
  float* C = static_cast<float*>(out.data);
  if (so.numel() == 0) return;
  auto gemm = [&](const float* a, const float* b, float* c) {
    if (g.k == 0)
      std::fill(c, c + g.m * g.n, 0.0f);
    else if (g.m * g.n * g.k >= kDnnlMinMacs)
      dnnl_matmuls().run(g, a, b, nullptr, c);
    else
      gemm_loops(g, a, b, c);
  };
  // Batch dims: walk the output's batch index, with broadcast strides (in matrices) for the operands.
  Shape batch(so.span().first(r - 2));
  Shape ba(sa.span().first(sa.size() - 2)), bb(sb.span().first(sb.size() - 2));
  Shape st_a = broadcast_strides(ba, batch), st_b = broadcast_strides(bb, batch);
  const int64_t mat_a = sa.back(-1) * sa.back(-2), mat_b = sb.back(-1) * sb.back(-2), mat_c = g.m * g.n;
  const int64_t nb = batch.numel();
  auto items = [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int64_t rest = i, oa = 0, ob = 0;
      for (int d = batch.size() - 1; d >= 0; --d) {
        int64_t idx = rest % batch[d];
        rest /= batch[d];
        oa += idx * st_a[d];
        ob += idx * st_b[d];
      }
      gemm(A + oa * mat_a, B + ob * mat_b, C + i * mat_c);
    }
  };
  // Small products (loops, one thread each) of a batch large enough to share: split the batch
  // across threads. Each product is computed as on one thread, so results do not change. Large
  // ones run one after another, each on every thread through oneDNN.
  const int64_t macs = g.m * g.n * g.k;
  if (nb > 1 && g.k > 0 && macs >= kDnnlMinMacs && ba == batch && bb == batch)
    return dnnl_matmuls().run(g, A, B, nullptr, C, nb);  // a batch of products, one oneDNN call
  const int nt = static_cast<int>(std::min<int64_t>(num_threads(), nb));
  if (nt <= 1 || macs >= kDnnlMinMacs || nb * macs < 2 * kParallelGrain) return items(0, nb);
  parallel_chunks(nb, nt, items);
}

void matmul_prepare(const FusedMatmul& f) { dnnl_matmuls().primitive(f); }
size_t matmul_packed_weight_bytes(const FusedMatmul& f) { return dnnl_matmuls().packed_bytes(f); }
void matmul_pack_weight(const FusedMatmul& f, const float* b, void* packed) { dnnl_matmuls().pack(f, b, packed); }
void matmul_fused(const FusedMatmul& f, const float* a, const void* b, const float* bias, float* c) {
  dnnl_matmuls().run(f, a, b, bias, c);
}

}  // namespace bj::rt
