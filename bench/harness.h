// File: bench/harness.h
// What every loom_bench scenario shares: its configuration (read from flags in main only),
// the results (a JSON object and the table, printed line by line as the run goes), and the
// measuring helpers: percentiles, sequential and saturating callers, a process's CPU and RSS.
// Processes are started with the tests' harness (tests/integration/process_harness.h).
//
// Not thread-safe unless said: a scenario runs on the bench's main thread; Saturation's
// callers run on threads of their own.
#ifndef LOOM_BENCH_HARNESS_H_
#define LOOM_BENCH_HARNESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "loom/v1/common.pb.h"
#include "nlohmann/json.hpp"

namespace loom::bench {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

struct BenchConfig {
  std::string bin;                 // the directory of the Loom binaries
  std::string dir;                 // the work directory
  bool json = false;               // print one JSON object instead of the table
  int requests = 2000;             // per latency measurement (after requests / 4 warm-up)
  int compiled_requests = 500;
  double seconds = 3;              // each saturation run
  int inflight = 16;               // callers in the saturation runs
  int devices = 10000;             // selector, heartbeat and memory runs
  double heartbeat_seconds = 5;
  int ledger_settlements = 5000;
  int engine_settlements = 2000;
  bool pin = true;                 // servers on CPU 0, the client on CPU 1
  std::vector<std::string> coordinator_flags;  // extra flags for the coordinator
};

struct Results {
  explicit Results(bool quiet) : quiet(quiet) {}
  json j;
  std::vector<std::string> lines;  // the table
  bool quiet;                      // --json: no table on stdout
};

// A table line, printed at once (the run takes a while) unless the output is JSON.
void Line(Results* r, const std::string& text);
std::string Verdict(bool met);  // "met" or "MISSED"

[[noreturn]] void Die(const std::string& message);
void PinTo(int cpu);
double Us(SteadyClock::duration d);
std::chrono::system_clock::time_point In(int seconds);  // a gRPC deadline

// /proc/PID/stat utime + stime, in seconds; /proc/PID/status VmRSS in kB.
double CpuSeconds(pid_t pid);
long RssKb(pid_t pid);

struct Percentiles {
  double p50 = 0, p99 = 0;
};
Percentiles Of(std::vector<double> v);

// Runs `call` `n` times one after another (after n/4 warm-up calls); wall time of each, in us.
std::vector<double> Sequential(int n, const std::function<void()>& call);
// Calls completed per second with `inflight` callers for `seconds`.
double Saturation(int inflight, double seconds, const std::function<void()>& call);
// Saturation, and the CPU each of `pids` spent per call meanwhile (microseconds).
struct Saturated {
  double rps = 0;
  std::vector<double> cpu_us;  // per call, one per pid
};
Saturated SaturationWithCpu(int inflight, double seconds, const std::function<void()>& call,
                            const std::vector<pid_t>& pids);

v1::ChatMessage User(const std::string& text);

}  // namespace loom::bench

#endif  // LOOM_BENCH_HARNESS_H_
