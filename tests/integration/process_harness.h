// File: tests/integration/process_harness.h
// Starts the real Loom binaries for integration tests: each on loopback with port 0, its
// address read from its --ready_file, its stderr in a log file under the test's temp dir.
// Every wait is bounded; nothing sleeps to synchronise (WaitFor polls a condition until a
// deadline, and fails the test when the deadline passes).
#ifndef LOOM_TESTS_INTEGRATION_PROCESS_HARNESS_H_
#define LOOM_TESTS_INTEGRATION_PROCESS_HARNESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace loom::testing {

// Polls `condition` (backing off from 5 ms to 100 ms) until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A child process; the destructor sends SIGTERM, waits up to 10 s, then SIGKILLs.
class Process {
 public:
  Process(pid_t pid, std::string name, std::string log) : pid_(pid), name_(name), log_(log) {}
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_; }
  std::string Log() const;
  void Signal(int sig);
  // The exit status (as from waitpid) if the process ended within `timeout`, else -1.
  int Wait(absl::Duration timeout);
  bool running() const { return !reaped_; }

 private:
  pid_t pid_;
  std::string name_;
  std::string log_;
  bool reaped_ = false;
  int status_ = 0;
};

// How a child starts (the benchmarks pin theirs).
struct SpawnOptions {
  int cpu = -1;                  // pinned to this CPU before exec; -1: not pinned
  bool die_with_parent = false;  // SIGKILL when the spawning thread ends (prctl PDEATHSIG), so
                                 // an interrupted run leaves no daemons behind
};

// Starts `binary` (a name under build/bin, or an absolute path) with `args`; stdout and stderr
// go to `log_path`.
std::unique_ptr<Process> Spawn(const std::string& binary, const std::vector<std::string>& args,
                               const std::string& log_path, const SpawnOptions& options = {});

struct CommandResult {
  int exit_code = -1;  // -1: killed after the timeout
  std::string out;
  std::string err;
};

// Runs `binary` to completion (killed after `timeout`).
CommandResult RunCommand(const std::string& binary, const std::vector<std::string>& args,
                  absl::Duration timeout = absl::Seconds(60));

std::string ReadFile(const std::string& path);

// An int64 field of a proto3 JSON object (loom-ledger --format=json: int64 as a decimal string,
// or a number); `missing` when absent or not an integer.
int64_t JsonInt64(const nlohmann::json& object, const std::string& key, int64_t missing = -1);

// A fresh directory for one test.
std::string MakeTempDir();

// A loopback port nobody holds now (bound and released; for servers that cannot take port 0
// and report theirs, like PostgreSQL and HAProxy). 0 when none could be bound.
int FreePort();

// A coordinator or worker that has written its ready file.
struct Daemon {
  std::unique_ptr<Process> process;
  std::string address;  // "grpc" (or, for HTTP servers, "base_url") of the ready file
  std::string http;     // "http" of the ready file, when the daemon serves HTTP
  std::string ready_file;
};

// Starts `binary` with --ready_file and `args`, waits (bounded) for the ready file. On failure
// the returned process is null and `error` says why, with the log.
Daemon StartDaemon(const std::string& binary, const std::string& dir, const std::string& name,
                   std::vector<std::string> args, std::string* error,
                   const SpawnOptions& options = {});

}  // namespace loom::testing

#endif  // LOOM_TESTS_INTEGRATION_PROCESS_HARNESS_H_
