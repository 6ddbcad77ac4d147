/* The plain C interface between a library made by `blockjit aot` and the
 * ahead-of-time runtime (the bj_aot library; CMake: blockjit::aot). A made
 * library holds each exported path's machine code, its optimized graph as
 * text, the model's tensors and one struct bj_aot_model describing them; its
 * header (NAME.h) wraps bj_aot_run for that model:
 *
 *   #include "mlp.h"
 *   float in[2 * 20], out[2 * 10];
 *   int rc = mlp_run(in, out);     // 0: done; > 0: no recorded path takes this input
 *   if (rc != 0) fprintf(stderr, "%s\n", mlp_message(rc));
 *
 * The runtime links no LLVM: the first call rebuilds each path's plan from its
 * graph (as the JIT made it) and checks that the library fits (this runtime's
 * code generator, this CPU's features). Calls are thread-safe. */
#ifndef BJ_AOT_ABI_H
#define BJ_AOT_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The layout below; a library of another version is refused, not misread. */
#define BJ_AOT_ABI_VERSION 1

struct bj_aot_path {
  const char* graph;        /* the optimized graph's text (memory-planned) */
  uint64_t graph_bytes;
  int32_t (*entry)(void* const*, const void*); /* its code (codegen/lower.h) */
  const uint64_t* offsets;  /* per parameter, then per constant of the graph: its data's offset in the blob */
  uint64_t n_offsets;
};

struct bj_aot_model {
  uint64_t abi;             /* BJ_AOT_ABI_VERSION */
  const char* name;
  const char* source_hash;  /* the code generator that made the code (codegen_source_hash) */
  const char* cpu;          /* the CPU it was made for (LLVM's name) and its features */
  const char* features;
  uint64_t exact;           /* made with CompileOptions::exact */
  uint64_t n_inputs, n_outputs;
  uint64_t n_paths;
  const struct bj_aot_path* paths;
  const unsigned char* blob; /* the tensors, each at an offset that is a multiple of 64 */
  uint64_t blob_bytes;
};

/* Runs the first path whose guards all hold on `inputs` (n_inputs pointers, each to data of its
 * input's type, row-major), writing `outputs` (n_outputs buffers). Returns 0 when a path ran; a
 * positive code when every path failed a guard (what the outputs hold is then unspecified);
 * a negative code when the library cannot run here or an argument is null. bj_aot_message
 * says which, naming the guard and where it was recorded. */
int bj_aot_run(const struct bj_aot_model* model, const void* const* inputs, void* const* outputs);
/* A sentence for a code bj_aot_run returned (static storage). */
const char* bj_aot_message(const struct bj_aot_model* model, int code);

#ifdef __cplusplus
}
#endif

#endif /* BJ_AOT_ABI_H */
