// File: fuzz/fuzz_check.h
// FUZZ_CHECK(cond): an invariant a fuzz target asserts about the code under test; a violation
// aborts with the condition, so libFuzzer saves the input as a crash.
#ifndef LOOM_FUZZ_FUZZ_CHECK_H_
#define LOOM_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(cond)                                                         \
  do {                                                                           \
    if (!(cond)) {                                                               \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                              \
    }                                                                            \
  } while (0)

#endif  // LOOM_FUZZ_FUZZ_CHECK_H_
