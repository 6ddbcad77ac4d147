/* A C program against an installed blockjit's AOT runtime: the seed MLP compiled ahead of time.
 * Prints its outputs for an input of 0.5 everywhere; exit status 0 when it ran. */
#include <stdio.h>

#include "seed_mlp.h"

int main(void) {
  float in[seed_mlp_in_size], out[seed_mlp_out_size];
  for (int i = 0; i < seed_mlp_in_size; ++i) in[i] = 0.5f;
  int rc = seed_mlp_run(in, out);
  if (rc != 0) {
    fprintf(stderr, "consumer_aot: %s\n", seed_mlp_message(rc));
    return 1;
  }
  printf("consumer_aot:");
  for (int i = 0; i < seed_mlp_out_size; ++i) printf(" %.6g", out[i]);
  printf("\n");
  return 0;
}
