/* A plain C program running a model compiled ahead of time: `blockjit export mlp` and
 * `blockjit aot` made libseed_mlp.a and seed_mlp.h at build time (examples/CMakeLists.txt);
 * this links them with blockjit's AOT runtime only (no LLVM). It prints the outputs for an input
 * read from standard input (seed_mlp_in_size numbers; missing ones are 0.5), or with --bench the
 * median time of a call. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seed_mlp.h"

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  static float in[seed_mlp_in_size], out[seed_mlp_out_size];
  const int bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
  for (int i = 0; i < seed_mlp_in_size; ++i) in[i] = 0.5f;
  if (!bench)
    for (int i = 0; i < seed_mlp_in_size && scanf("%f", &in[i]) == 1; ++i) {
    }
  int rc = seed_mlp_run(in, out);
  if (rc != 0) {
    fprintf(stderr, "aot_example: %s\n", seed_mlp_message(rc));
    return 1;
  }
  if (bench) {
    double rounds[15];
    for (int r = 0; r < 15; ++r) {
      double t0 = now_us();
      for (int k = 0; k < 10000; ++k) seed_mlp_run(in, out);
      rounds[r] = (now_us() - t0) / 10000;
    }
    qsort(rounds, 15, sizeof rounds[0], compare);
    printf("seed_mlp_run: %.3f us per call (median of 15 rounds of 10000)\n", rounds[7]);
    return 0;
  }
  for (int i = 0; i < seed_mlp_out_size; ++i) printf("%.6g%s", out[i], i + 1 < seed_mlp_out_size ? " " : "\n");
  return 0;
}
