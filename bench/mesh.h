// File: bench/mesh.h
// The mesh loom_bench measures: its own coordinator and four simulated workers (zero latency,
// kAnswerTokens-token answers) on loopback, and two forwarding proxies in front of the worker
// serving kPinnedModel (bench/bare_proxy.cc: the floor for any hop in between). Servers run
// on CPU 0 when the config pins; every process dies with the bench.
#ifndef LOOM_BENCH_MESH_H_
#define LOOM_BENCH_MESH_H_

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "bench/harness.h"
#include "tests/integration/process_harness.h"

namespace loom::bench {

inline constexpr char kPassthroughPrompt[] = "What is the capital of Australia?";
inline constexpr char kPinnedModel[] = "llama-3.1-8b";
inline constexpr int kAnswerTokens = 16;
inline constexpr char kFourParts[] =
    "1. Write a Python function that reverses a string. 2. Summarize the causes of the French "
    "Revolution. 3. Translate 'good morning, friends' into French. 4. Write a haiku about "
    "autumn rain.";
inline constexpr char kOnePart[] = "Write a Python function that reverses a string.";

struct Mesh {
  testing::Daemon coordinator;
  std::vector<testing::Daemon> workers;
  std::string worker_address;  // the worker serving kPinnedModel
  pid_t worker_pid = 0;        // its process
  // Forwarding proxies in front of that worker, by server style ("sync", "callback").
  std::vector<std::pair<std::string, testing::Daemon>> proxies;
  std::string ledger;       // --ledger of the coordinator
  std::string join_secret;  // the mesh runs plaintext; devices join with tokens from this

  const std::string& coordinator_address() const { return coordinator.address; }
  pid_t coordinator_pid() const { return coordinator.process->pid(); }
};

// Starts the mesh in `dir`, its ledger `ledger` (a --ledger spec; empty: an SQLite file in
// `dir`), grants the bench client credits, and waits (bounded) until the coordinator lists the
// four workers. Dies with a message when any of it fails.
Mesh StartMesh(const BenchConfig& config, const std::string& dir, const std::string& ledger = "");

}  // namespace loom::bench

#endif  // LOOM_BENCH_MESH_H_
