// loom_bench: the coordinator's cost beside the floor it cannot beat, measured in one run.
//
// It starts its own coordinator and four simulated workers (zero latency, 16-token answers) on
// loopback, pins them to CPU 0 and itself (the client) to CPU 1, warms up, then measures:
//   1. raw hop      client -> worker Infer directly: p50, p99, saturation requests/s;
//   2. passthrough  the same payload through the coordinator (Complete, model pinned):
//                   p50, p99, saturation, ratios to (1), and the coordinator's own time per
//                   request (wall time inside it minus waits on workers and on the disk);
//   3. compiled     four independent sub-tasks plus synthesis: total and the coordinator's own
//                   time p50/p99, and the fan-out stage of four sub-tasks beside one;
//   4. ledger       settlements/s beside raw batched inserts of the same rows, same durability;
//   5. selector     selection p50/p99 among 10,000 registered devices while they heartbeat
//                   (in process), and the coordinator CPU that 10,000 devices heartbeating once
//                   a second cost (the real coordinator, over gRPC);
//   6. memory       coordinator RSS at rest and with 10,000 devices registered;
//   7. engines      settlements/s on PostgreSQL (1 and 2 coordinators) beside raw PostgreSQL
//                   inserts and SQLite, and the passthrough p50 of a mesh on each engine (a
//                   real PostgreSQL server started for the run; --engines=false skips it).
// Each target of issue 7 is printed beside its measurement as met or missed. Times in
// microseconds. Nothing here is a test: it never fails on a time.
//
//   build/bin/loom_bench [--json] [--requests=2000] [--seconds=3] [--devices=10000]
#include <grpcpp/grpcpp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/engine_measure.h"
#include "bench/ledger_measure.h"
#include "common/categories.h"
#include "common/clock.h"
#include "common/join_token.h"
#include "common/protocol.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/mesh/model_selector.h"
#include "coordinator/mesh/registry.h"
#include "loom/v1/orchestrator.grpc.pb.h"
#include "loom/v1/registry.grpc.pb.h"
#include "loom/v1/worker.grpc.pb.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(bool, json, false, "Print one JSON object instead of the table.");
ABSL_FLAG(int, requests, 2000, "Requests per latency measurement (after as many warm-up requests / 4).");
ABSL_FLAG(int, compiled_requests, 500, "Compiled requests per measurement.");
ABSL_FLAG(double, seconds, 3, "Length of each saturation run.");
ABSL_FLAG(int, inflight, 16, "Requests in flight in the saturation runs.");
ABSL_FLAG(int, devices, 10000, "Registered devices for the selector, heartbeat and memory runs.");
ABSL_FLAG(double, heartbeat_seconds, 5, "Length of the heartbeat CPU run.");
ABSL_FLAG(int, ledger_settlements, 5000, "Settlements per ledger measurement.");
ABSL_FLAG(int, engine_settlements, 2000, "Settlements per engine measurement (PostgreSQL, SQLite).");
ABSL_FLAG(bool, engines, true, "Measure the PostgreSQL engine too (starts a real server).");
ABSL_FLAG(bool, pin, true, "Pin the coordinator and workers to CPU 0 and the client to CPU 1.");
ABSL_FLAG(std::vector<std::string>, coordinator_flags, {},
          "Extra flags for the coordinator, comma-separated (e.g. --ledger_synchronous=OFF to "
          "see the disk's share).");
ABSL_FLAG(std::vector<std::string>, only, {},
          "Run only these parts: mesh (hops, compiled, heartbeats, memory), ledger, engines, "
          "selector. Default: all.");
ABSL_FLAG(std::string, dir, "", "Work directory (default: a fresh one under /tmp, removed after).");

namespace loom::bench {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

double Us(SteadyClock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

[[noreturn]] void Die(const std::string& message) {
  std::cerr << "loom_bench: " << message << "\n";
  std::exit(1);
}

void PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof(set), &set);
}

// A child process, pinned before exec; SIGTERM then SIGKILL on destruction, SIGKILL if the
// bench itself dies.
class Child {
 public:
  Child(const std::string& binary, const std::vector<std::string>& args, const std::string& log,
        int cpu) {
    pid_ = fork();
    if (pid_ < 0) Die("fork failed");
    if (pid_ == 0) {
      // Dies with the bench, so an interrupted run leaves no coordinator or workers behind.
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (cpu >= 0) PinTo(cpu);
      FILE* out = std::fopen(log.c_str(), "w");
      if (out) {
        dup2(fileno(out), 1);
        dup2(fileno(out), 2);
      }
      std::vector<char*> argv{const_cast<char*>(binary.c_str())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
  }
  ~Child() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 500; ++i) {  // up to 5 s
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      usleep(10'000);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  // Waits for the process to exit (bounded); its exit code, or -1.
  int Wait(int seconds) {
    for (int i = 0; i < seconds * 100; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      usleep(10'000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
};

json WaitForReadyFile(const std::string& path, const std::string& what) {
  for (int i = 0; i < 2000; ++i) {  // up to 20 s
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    json j = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("grpc")) return j;
    usleep(10'000);
  }
  Die(absl::StrCat(what, " did not become ready; see its log beside ", path));
}

// /proc/PID/stat utime + stime, in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return static_cast<double>(utime + stime) / sysconf(_SC_CLK_TCK);
}

long RssKb(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

struct Percentiles {
  double p50 = 0, p99 = 0;
};
Percentiles Of(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, v.size() * 99 / 100)]};
}

// Runs `call` `n` times one after another (after n/4 warm-up calls); wall time of each, in us.
std::vector<double> Sequential(int n, const std::function<void()>& call) {
  for (int i = 0; i < n / 4; ++i) call();
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    const auto start = SteadyClock::now();
    call();
    us.push_back(Us(SteadyClock::now() - start));
  }
  return us;
}

// Calls completed per second with `inflight` callers for `seconds`.
double Saturation(int inflight, double seconds, const std::function<void()>& call) {
  std::atomic<bool> stop{false};
  std::atomic<long> done{0};
  std::vector<std::thread> threads;
  const auto start = SteadyClock::now();
  for (int t = 0; t < inflight; ++t) {
    threads.emplace_back([&] {
      while (!stop.load()) {
        call();
        ++done;
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  return done.load() / std::chrono::duration<double>(SteadyClock::now() - start).count();
}

// Saturation, and the CPU each of `pids` spent per call meanwhile (microseconds).
struct Saturated {
  double rps = 0;
  std::vector<double> cpu_us;  // per call, one per pid
};
Saturated SaturationWithCpu(int inflight, double seconds, const std::function<void()>& call,
                            const std::vector<pid_t>& pids) {
  std::vector<double> before;
  for (pid_t pid : pids) before.push_back(CpuSeconds(pid));
  const auto start = SteadyClock::now();
  Saturated out;
  out.rps = Saturation(inflight, seconds, call);
  const double calls = out.rps * std::chrono::duration<double>(SteadyClock::now() - start).count();
  for (size_t i = 0; i < pids.size(); ++i) {
    out.cpu_us.push_back(1e6 * (CpuSeconds(pids[i]) - before[i]) / calls);
  }
  return out;
}

v1::ChatMessage User(const std::string& text) {
  v1::ChatMessage m;
  m.set_role("user");
  m.set_content(text);
  return m;
}

constexpr char kPassthroughPrompt[] = "What is the capital of Australia?";
constexpr char kPinnedModel[] = "llama-3.1-8b";
constexpr int kAnswerTokens = 16;
constexpr char kFourParts[] =
    "1. Write a Python function that reverses a string. 2. Summarize the causes of the French "
    "Revolution. 3. Translate 'good morning, friends' into French. 4. Write a haiku about "
    "autumn rain.";
constexpr char kOnePart[] = "Write a Python function that reverses a string.";

struct Mesh {
  std::unique_ptr<Child> coordinator;
  std::vector<std::unique_ptr<Child>> workers;
  std::string coordinator_address;
  std::string worker_address;  // the worker serving kPinnedModel
  pid_t worker_pid = 0;        // its process
  // Forwarding proxies in front of that worker (bench/bare_proxy.cc), by server style.
  std::vector<std::pair<std::string, std::unique_ptr<Child>>> proxies;
  std::vector<std::string> proxy_addresses;
  std::string ledger;       // --ledger of the coordinator
  std::string join_secret;  // the mesh runs plaintext; devices join with tokens from this
};

// The mesh's ledger is `ledger` (a --ledger spec; empty: an SQLite file in `dir`).
Mesh StartMesh(const std::string& bin, const std::string& dir, bool pin,
               const std::string& ledger = "") {
  Mesh mesh;
  mesh.ledger = ledger.empty() ? "sqlite:" + dir + "/loom.db" : ledger;
  const int server_cpu = pin ? 0 : -1;
  auto secret = LoadOrCreateJoinSecret(dir + "/join.secret");
  if (!secret.ok()) Die(std::string(secret.status().message()));
  mesh.join_secret = *secret;
  std::vector<std::string> coordinator_args{
      "--grpc_listen=127.0.0.1:0", "--http_listen=127.0.0.1:0", "--ledger=" + mesh.ledger,
      "--allow_anonymous=bench", "--decomposer=rules", "--log_level=warn", "--plaintext",
      "--join_secret_file=" + dir + "/join.secret", "--ready_file=" + dir + "/coordinator.json"};
  for (const std::string& flag : absl::GetFlag(FLAGS_coordinator_flags)) {
    coordinator_args.push_back(flag);
  }
  mesh.coordinator = std::make_unique<Child>(bin + "/loom-coordinator", coordinator_args,
                                             dir + "/coordinator.log", server_cpu);
  mesh.coordinator_address =
      WaitForReadyFile(dir + "/coordinator.json", "the coordinator")["grpc"].get<std::string>();
  Child grant(bin + "/loom-ledger",
              {"--ledger=" + mesh.ledger, "grant", "client:bench", "100000000", "--reference=bench"},
              dir + "/grant.log", -1);
  if (grant.Wait(30) != 0) Die("granting the bench client credits failed; see " + dir + "/grant.log");
  for (const char* model : {"qwen2.5-coder-7b", "llama-3.1-8b", "mistral-7b", "qwen2.5-7b"}) {
    const std::string ready = absl::StrCat(dir, "/worker-", model, ".json");
    mesh.workers.push_back(std::make_unique<Child>(
        bin + "/loom-worker",
        std::vector<std::string>{"--coordinator=" + mesh.coordinator_address,
                                 absl::StrCat("--device_id=bench-", model),
                                 absl::StrCat("--model=", model),
                                 absl::StrCat("--sim_output_tokens=", kAnswerTokens),
                                 "--max_concurrency=256", "--log_level=warn", "--plaintext",
                                 "--join_token=" + IssueJoinToken(mesh.join_secret,
                                                                  absl::StrCat("bench-", model),
                                                                  absl::StrCat("bench-", model)),
                                 "--ready_file=" + ready},
        absl::StrCat(dir, "/worker-", model, ".log"), server_cpu));
    const std::string address = WaitForReadyFile(ready, model)["grpc"].get<std::string>();
    if (std::string(model) == kPinnedModel) {
      mesh.worker_address = address;
      mesh.worker_pid = mesh.workers.back()->pid();
    }
  }
  for (const char* mode : {"sync", "callback"}) {
    const std::string ready = absl::StrCat(dir, "/proxy-", mode, ".json");
    mesh.proxies.emplace_back(
        mode, std::make_unique<Child>(bin + "/loom_bare_proxy",
                                      std::vector<std::string>{"--target=" + mesh.worker_address,
                                                               absl::StrCat("--mode=", mode),
                                                               "--ready_file=" + ready},
                                      absl::StrCat(dir, "/proxy-", mode, ".log"), server_cpu));
    mesh.proxy_addresses.push_back(
        WaitForReadyFile(ready, absl::StrCat("the ", mode, " proxy"))["grpc"].get<std::string>());
  }
  // Bounded wait until the coordinator lists all four.
  auto stub = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator_address, grpc::InsecureChannelCredentials()));
  for (int i = 0;; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1::ListDevicesResponse devices;
    if (stub->ListDevices(&context, {}, &devices).ok() && devices.devices_size() == 4) break;
    if (i > 2000) Die("workers did not register with the coordinator");
    usleep(10'000);
  }
  return mesh;
}

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

struct Results {
  json j;
  std::vector<std::string> lines;  // the table
};

// A table line, printed at once (the run takes a while) unless the output is --json.
void Line(Results* r, const std::string& text) {
  r->lines.push_back(text);
  if (!absl::GetFlag(FLAGS_json)) std::cout << text << std::endl;
}

std::string Verdict(bool met) { return met ? "met" : "MISSED"; }

Percentiles MeasureHops(const Mesh& mesh, Results* r, double fsync_us) {
  const int n = absl::GetFlag(FLAGS_requests);
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const int inflight = absl::GetFlag(FLAGS_inflight);
  auto worker = v1::Worker::NewStub(
      grpc::CreateChannel(mesh.worker_address, grpc::InsecureChannelCredentials()));
  auto coordinator = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator_address, grpc::InsecureChannelCredentials()));

  v1::InferRequest infer;
  infer.set_request_id("bench");
  infer.set_sub_task_id("raw");
  infer.set_attempt(1);
  infer.set_model(kPinnedModel);
  *infer.add_messages() = User(kPassthroughPrompt);
  infer.set_max_tokens(kAnswerTokens);
  auto infer_call = [&](v1::Worker::Stub* stub) {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    auto reader = stub->Infer(&context, infer);
    v1::InferChunk chunk;
    while (reader->Read(&chunk)) {
    }
    grpc::Status status = reader->Finish();
    if (!status.ok()) Die(absl::StrCat("Infer via ", context.peer(), " failed: ", status.error_message()));
  };
  auto raw_call = [&] { infer_call(worker.get()); };

  v1::CompleteRequest request;
  *request.add_messages() = User(kPassthroughPrompt);
  request.set_model(kPinnedModel);
  request.set_max_tokens(kAnswerTokens);
  std::vector<double> self_us;
  std::vector<v1::Timings> timings;
  std::mutex self_mu;
  auto passthrough_call = [&] {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    v1::CompleteResponse response;
    grpc::Status status = coordinator->Complete(&context, request, &response);
    if (!status.ok()) Die("passthrough Complete failed: " + status.error_message());
    std::lock_guard<std::mutex> lock(self_mu);
    self_us.push_back(static_cast<double>(response.coordinator_overhead_us()));
    timings.push_back(response.timings());
  };

  const std::vector<pid_t> servers = {mesh.coordinator->pid(), mesh.worker_pid};
  const Percentiles raw = Of(Sequential(n, raw_call));
  const Saturated raw_sat = SaturationWithCpu(inflight, seconds, raw_call, servers);
  const double raw_rps = raw_sat.rps;
  r->j["raw_hop"] = {{"p50_us", raw.p50}, {"p99_us", raw.p99}, {"rps", raw_rps},
                     {"worker_cpu_us", raw_sat.cpu_us[1]}};
  Line(r, absl::StrFormat("raw hop (client -> worker Infer)      p50 %7.0f  p99 %7.0f  %7.0f req/s",
                          raw.p50, raw.p99, raw_rps));

  // The floor for any hop in between: a proxy that only forwards (bench/bare_proxy.cc).
  for (size_t i = 0; i < mesh.proxies.size(); ++i) {
    auto proxy = v1::Worker::NewStub(
        grpc::CreateChannel(mesh.proxy_addresses[i], grpc::InsecureChannelCredentials()));
    const std::string& mode = mesh.proxies[i].first;
    auto call = [&] { infer_call(proxy.get()); };
    const Percentiles p = Of(Sequential(n, call));
    const Saturated sat =
        SaturationWithCpu(inflight, seconds, call, {mesh.proxies[i].second->pid()});
    const double rps = sat.rps, cpu_us = sat.cpu_us[0];
    r->j["bare_proxy"][mode] = {{"p50_us", p.p50}, {"p99_us", p.p99}, {"rps", rps},
                                {"cpu_us", cpu_us}, {"p50_ratio", p.p50 / raw.p50},
                                {"rps_ratio", rps / raw_rps}};
    Line(r, absl::StrFormat("bare proxy, %-8s (forwards only)    p50 %7.0f  p99 %7.0f  %7.0f "
                            "req/s  (%.2fx raw p50, %.2fx raw req/s; CPU %.0f per request)",
                            mode, p.p50, p.p99, rps, p.p50 / raw.p50, rps / raw_rps, cpu_us));
  }

  self_us.clear();
  const Percentiles pass = Of(Sequential(n, passthrough_call));
  self_us.erase(self_us.begin(), self_us.end() - n);  // the warm-up calls recorded theirs too
  timings.erase(timings.begin(), timings.end() - n);
  const Percentiles self = Of(self_us);
  auto p50_of = [&](int64_t (v1::Timings::*field)() const) {
    std::vector<double> v;
    for (const auto& t : timings) v.push_back(static_cast<double>((t.*field)()));
    return Of(v).p50;
  };
  const double queued = p50_of(&v1::Timings::queued_us), analyze = p50_of(&v1::Timings::analyze_us),
               reserve = p50_of(&v1::Timings::reserve_us), execute = p50_of(&v1::Timings::execute_us),
               device = p50_of(&v1::Timings::device_wait_us), settle = p50_of(&v1::Timings::settle_us),
               total = p50_of(&v1::Timings::total_us);
  const Saturated pass_sat = SaturationWithCpu(inflight, seconds, passthrough_call, servers);
  const double pass_rps = pass_sat.rps;

  r->j["passthrough"] = {{"p50_us", pass.p50},
                         {"p99_us", pass.p99},
                         {"rps", pass_rps},
                         {"self_p50_us", self.p50},
                         {"self_p99_us", self.p99},
                         {"p50_ratio", pass.p50 / raw.p50},
                         {"p99_ratio", pass.p99 / raw.p99},
                         {"rps_ratio", pass_rps / raw_rps}};
  Line(r, absl::StrFormat("passthrough (client -> coordinator)   p50 %7.0f  p99 %7.0f  %7.0f req/s",
                          pass.p50, pass.p99, pass_rps));
  Line(r, absl::StrFormat("  ratio to the raw hop                p50 %6.2fx  p99 %6.2fx  %6.2fx",
                          pass.p50 / raw.p50, pass.p99 / raw.p99, pass_rps / raw_rps));
  Line(r, absl::StrFormat("  coordinator's own time              p50 %7.0f  p99 %7.0f", self.p50,
                          self.p99));
  Line(r, absl::StrFormat("  inside the coordinator, p50 of each: total %.0f = queued %.0f, "
                          "analyze %.0f, reserve %.0f, call %.0f (device wait %.0f), settle %.0f",
                          total, queued, analyze, reserve, execute, device, settle));
  Line(r, absl::StrFormat("  CPU per request at saturation: worker %.0f (raw hop: %.0f), "
                          "coordinator %.0f",
                          pass_sat.cpu_us[1], raw_sat.cpu_us[1], pass_sat.cpu_us[0]));
  r->j["passthrough"]["worker_cpu_us"] = pass_sat.cpu_us[1];
  r->j["passthrough"]["coordinator_cpu_us"] = pass_sat.cpu_us[0];
  r->j["passthrough"]["inside_p50_us"] = {{"total", total},     {"queued", queued},
                                          {"analyze", analyze}, {"reserve", reserve},
                                          {"execute", execute}, {"device_wait", device},
                                          {"settle", settle}};
  const double limit = 2.3 * raw.p50 + fsync_us;
  Line(r, absl::StrFormat("  target p50 <= 2.3 x raw + 1 fsync = %.0f: %s", limit,
                          Verdict(pass.p50 <= limit)));
  Line(r, absl::StrFormat("  target own time p50 <= 50: %s", Verdict(self.p50 <= 50)));
  Line(r, absl::StrFormat("  target saturation >= 0.4 x raw at %d in flight: %s (%.2fx)", inflight,
                          Verdict(pass_rps >= 0.4 * raw_rps), pass_rps / raw_rps));
  return pass;
}

void MeasureCompiled(const Mesh& mesh, Results* r, double fsync_us) {
  const int n = absl::GetFlag(FLAGS_compiled_requests);
  auto coordinator = v1::Orchestrator::NewStub(
      grpc::CreateChannel(mesh.coordinator_address, grpc::InsecureChannelCredentials()));
  auto run = [&](const char* prompt, int expect_sub_tasks, std::vector<double>* self,
                 std::vector<double>* execute) {
    v1::CompleteRequest request;
    *request.add_messages() = User(prompt);
    request.set_mode(v1::PLAN_KIND_COMPILED);
    request.set_max_tokens(kAnswerTokens);
    return [=, &coordinator] {
      grpc::ClientContext context;
      context.set_deadline(In(10));
      v1::CompleteResponse response;
      grpc::Status status = coordinator->Complete(&context, request, &response);
      if (!status.ok()) Die("compiled Complete failed: " + status.error_message());
      if (response.plan().sub_tasks_size() != expect_sub_tasks) {
        Die(absl::StrCat("expected ", expect_sub_tasks, " sub-tasks, the plan has ",
                         response.plan().sub_tasks_size()));
      }
      self->push_back(static_cast<double>(response.coordinator_overhead_us()));
      execute->push_back(static_cast<double>(response.timings().execute_us()));
    };
  };
  std::vector<double> self4, execute4, self1, execute1;
  const Percentiles total4 = Of(Sequential(n, run(kFourParts, 4, &self4, &execute4)));
  const Percentiles total1 = Of(Sequential(n, run(kOnePart, 1, &self1, &execute1)));
  // The warm-up calls also recorded: keep the measured ones.
  self4.erase(self4.begin(), self4.end() - n);
  execute4.erase(execute4.begin(), execute4.end() - n);
  execute1.erase(execute1.begin(), execute1.end() - n);
  const Percentiles own = Of(self4), fan4 = Of(execute4), fan1 = Of(execute1);
  const double raw_p50 = r->j["raw_hop"]["p50_us"].get<double>();
  r->j["compiled"] = {{"p50_us", total4.p50},
                      {"p99_us", total4.p99},
                      {"overhead_p50_us", own.p50},
                      {"overhead_p99_us", own.p99},
                      {"fanout4_p50_us", fan4.p50},
                      {"single_p50_us", fan1.p50},
                      {"single_total_p50_us", total1.p50},
                      {"sub_tasks", 4}};
  Line(r, absl::StrFormat("compiled, 4 sub-tasks + synthesis      p50 %7.0f  p99 %7.0f", total4.p50,
                          total4.p99));
  Line(r, absl::StrFormat("  coordinator's own time              p50 %7.0f  p99 %7.0f", own.p50,
                          own.p99));
  Line(r, absl::StrFormat("  fan-out stage: 4 sub-tasks p50 %.0f, 1 sub-task p50 %.0f (%.2fx)",
                          fan4.p50, fan1.p50, fan4.p50 / fan1.p50));
  const double limit = 3.5 * raw_p50 + fsync_us;
  Line(r, absl::StrFormat("  target p50 <= 3.5 x raw + 1 fsync = %.0f: %s", limit,
                          Verdict(total4.p50 <= limit)));
  Line(r, absl::StrFormat("  target fan-out of 4 <= 1.5 x one: %s", Verdict(fan4.p50 <= 1.5 * fan1.p50)));
}

void MeasureLedger(const std::string& dir, Results* r) {
  const int n = absl::GetFlag(FLAGS_ledger_settlements);
  const LedgerBenchOptions options{dir, "FULL"};
  const double raw = RawBatchedPerSecond(options, n);
  const double settle16 = SettlePerSecond(options, n, 16);
  const double settle64 = SettlePerSecond(options, n, 64);
  r->j["ledger"] = {{"settle_per_s", settle64},
                    {"settle_16_threads_per_s", settle16},
                    {"raw_insert_per_s", raw},
                    {"ratio", settle64 / raw},
                    {"synchronous", "FULL"}};
  Line(r, absl::StrFormat("ledger, synchronous=FULL: raw batched inserts %.0f/s; settle %.0f/s "
                          "(64 threads, %.2fx), %.0f/s (16 threads, %.2fx)",
                          raw, settle64, settle64 / raw, settle16, settle16 / raw));
  Line(r, absl::StrFormat("  target settle >= 0.5 x raw: %s", Verdict(settle64 >= 0.5 * raw)));
}

// The ledger engines side by side (issue 19): settlements per second on PostgreSQL with one
// and two coordinators beside raw PostgreSQL inserts of the same rows and beside SQLite
// (bench/engine_measure.h), and the passthrough p50 of a whole mesh whose coordinator settles
// into each engine (`sqlite_p50` is the passthrough run's figure on SQLite).
void MeasureEngineColumn(const std::string& bin, const std::string& dir, bool pin,
                         const Percentiles& sqlite_pass, Results* r) {
  testing::PostgresServer pg;
  if (!pg.Start()) {
    Line(r, "engines: PostgreSQL did not start (" + pg.error() + "); run deploy/setup.sh");
    return;
  }
  const EngineFigures f = MeasureEngines(pg, absl::GetFlag(FLAGS_engine_settlements), 16, 32);
  if (pg.CreateDatabase("mesh").empty()) Die("cannot create the mesh database: " + pg.error());
  Percentiles pass;
  {
    const std::string mesh_dir = dir + "/postgresql-mesh";
    std::filesystem::create_directories(mesh_dir);
    Mesh mesh = StartMesh(bin, mesh_dir, pin,
                          absl::StrCat("postgresql://loom@127.0.0.1:", pg.port(), "/mesh"));
    auto coordinator = v1::Orchestrator::NewStub(
        grpc::CreateChannel(mesh.coordinator_address, grpc::InsecureChannelCredentials()));
    v1::CompleteRequest request;
    *request.add_messages() = User(kPassthroughPrompt);
    request.set_model(kPinnedModel);
    request.set_max_tokens(kAnswerTokens);
    pass = Of(Sequential(absl::GetFlag(FLAGS_requests), [&] {
      grpc::ClientContext context;
      context.set_deadline(In(10));
      v1::CompleteResponse response;
      grpc::Status status = coordinator->Complete(&context, request, &response);
      if (!status.ok()) Die("passthrough on PostgreSQL failed: " + status.error_message());
    }));
  }
  r->j["engines"] = {{"raw_postgresql_per_s", f.raw_postgresql},
                     {"postgresql_1_coordinator_per_s", f.postgresql_1},
                     {"postgresql_2_coordinators_per_s", f.postgresql_2},
                     {"sqlite_per_s", f.sqlite},
                     {"passthrough_p50_us", {{"sqlite", sqlite_pass.p50}, {"postgresql", pass.p50}}},
                     {"passthrough_p99_us", {{"sqlite", sqlite_pass.p99}, {"postgresql", pass.p99}}}};
  Line(r, "engines (16 threads, 256 clients, durable)   settlements/s     passthrough p50    p99");
  Line(r, absl::StrFormat("  raw PostgreSQL inserts, same rows          %8.0f", f.raw_postgresql));
  Line(r, absl::StrFormat("  PostgreSQL ledger, 1 coordinator           %8.0f (%.2fx raw)  %7.0f  %7.0f",
                          f.postgresql_1, f.postgresql_1 / f.raw_postgresql, pass.p50, pass.p99));
  Line(r, absl::StrFormat("  PostgreSQL ledger, 2 coordinators          %8.0f (%.2fx one)",
                          f.postgresql_2, f.postgresql_2 / f.postgresql_1));
  Line(r, absl::StrFormat("  SQLite ledger                              %8.0f              %7.0f  %7.0f",
                          f.sqlite, sqlite_pass.p50, sqlite_pass.p99));
  Line(r, absl::StrFormat("  target PostgreSQL >= 0.5 x raw: %s; 2 coordinators >= 0.9 x one: %s",
                          Verdict(f.postgresql_1 >= 0.5 * f.raw_postgresql),
                          Verdict(f.postgresql_2 >= 0.9 * f.postgresql_1)));
}

v1::RegisterRequest FakeDevice(int i) {
  static const std::pair<const char*, const char*> kModels[] = {
      {"qwen2.5-coder-7b", "qwen-coder"}, {"llama-3.1-8b", "llama"}, {"mistral-7b", "mistral"},
      {"qwen2.5-7b", "qwen"},             {"phi-3-mini", "phi"},     {"gemma-2-9b", "gemma"}};
  v1::RegisterRequest r;
  r.mutable_protocol_version()->set_major(kProtocolMajor);
  r.mutable_protocol_version()->set_minor(kProtocolMinor);
  r.set_device_id(absl::StrCat("fake-", i));
  r.set_provider_id(absl::StrCat("provider-", i % 500));
  r.set_address("127.0.0.1:9");  // never called: no request runs while they are registered
  auto* m = r.add_models();
  m->set_name(kModels[i % 6].first);
  m->set_family(kModels[i % 6].second);
  m->set_parameters_b(7);
  r.mutable_load()->set_max_concurrency(4);
  r.mutable_load()->set_active(i % 4);
  r.mutable_load()->set_tokens_per_second(10 + i % 90);
  // What policies select on: four regions (carbon from the table below), a third of the
  // providers at each trust tier.
  static const char* kRegions[] = {"eu-west", "eu-north", "us-east", "ap-south"};
  r.set_region(kRegions[(i / 6) % 4]);
  r.set_simulated(true);
  return r;
}

RegistryOptions FakeMeshOptions() {
  RegistryOptions o;
  for (int p = 0; p < 500; ++p) {
    o.provider_trust[absl::StrCat("provider-", p)] =
        p % 3 == 0 ? v1::TRUST_TIER_OWNED : p % 3 == 1 ? v1::TRUST_TIER_VERIFIED : v1::TRUST_TIER_COMMUNITY;
  }
  o.carbon_by_region = {{"eu-west", 250}, {"eu-north", 30}, {"us-east", 400}, {"ap-south", 700}};
  return o;
}

// Selection inside the process, on the registry the coordinator uses, while every device
// heartbeats once a second from another thread.
void MeasureSelector(Results* r) {
  const int devices = absl::GetFlag(FLAGS_devices);
  spdlog::set_level(spdlog::level::warn);
  DeviceRegistry registry(FakeMeshOptions(), Clock::Real());
  std::vector<v1::HeartbeatRequest> beats;
  for (int i = 0; i < devices; ++i) {
    auto lease = registry.Register(FakeDevice(i));
    if (!lease.ok()) Die(lease.status().ToString());
    v1::HeartbeatRequest& h = beats.emplace_back();
    h.set_device_id(absl::StrCat("fake-", i));
    h.set_lease_id(lease->lease_id());
    h.mutable_load()->set_max_concurrency(4);
    h.mutable_load()->set_tokens_per_second(10 + i % 90);
  }
  std::atomic<bool> stop{false};
  std::thread heartbeats([&] {
    // The mesh is gone by now: the heartbeats get CPU 0, the selections keep CPU 1.
    if (absl::GetFlag(FLAGS_pin)) PinTo(0);
    const auto start = SteadyClock::now();
    for (long k = 0; !stop.load(); ++k) {
      v1::HeartbeatRequest& h = beats[k % beats.size()];
      h.mutable_load()->set_active(static_cast<int>(k % 4));
      (void)registry.Heartbeat(h);  // the load it reports is all the selector needs
      std::this_thread::sleep_until(start + std::chrono::microseconds(k * 1'000'000 / devices));
    }
  });
  const ModelSelector selector;
  // The same selections without a policy, with hard limits (loom-private's trust, two of the
  // four regions, a speed floor) and with soft weights (loom-green's), interleaved so that the
  // three see the same heartbeat traffic.
  SelectionPolicy limits;
  limits.name = "limits";
  limits.min_trust = v1::TRUST_TIER_VERIFIED;
  limits.regions = {"eu-north", "eu-west"};
  limits.min_tokens_per_s = 20;
  SelectionPolicy weights;
  weights.name = "weights";
  weights.weights = {1.0 / 3, 0, 0, 2.0 / 3};
  const std::pair<const char*, const SelectionPolicy*> kRuns[] = {
      {"none", nullptr}, {"limits", &limits}, {"weights", &weights}};
  std::mt19937 rng(1);
  std::vector<double> us[3];
  for (int i = 0; i < 300'000; ++i) {
    const int run = i % 3;
    const v1::TaskCategory category = kAllCategories[rng() % kAllCategories.size()];
    const auto start = SteadyClock::now();
    auto s = selector.SelectForCategories(registry, {category}, {}, kRuns[run].second);
    us[run].push_back(Us(SteadyClock::now() - start));
    if (!s.ok()) Die(s.status().ToString());
  }
  stop = true;
  heartbeats.join();
  const Percentiles p = Of(us[0]);
  // Fields, not the object: the heartbeat run wrote its figures into it before.
  r->j["selector"]["devices"] = devices;
  r->j["selector"]["p50_us"] = p.p50;
  r->j["selector"]["p99_us"] = p.p99;
  Line(r, absl::StrFormat("selector, %d devices heartbeating: p50 %.2f  p99 %.2f", devices, p.p50,
                          p.p99));
  bool met = p.p99 <= 20;
  for (int run = 1; run < 3; ++run) {
    const Percentiles q = Of(us[run]);
    r->j["selector"]["policy"][kRuns[run].first] = {{"p50_us", q.p50}, {"p99_us", q.p99}};
    Line(r, absl::StrFormat("  with policy %-8s p50 %.2f  p99 %.2f (%.2fx none at p99)",
                            kRuns[run].first, q.p50, q.p99, q.p99 / std::max(p.p99, 1e-9)));
    met = met && q.p99 <= 20;
  }
  Line(r, absl::StrFormat("  target p99 <= 20 with and without policies: %s", Verdict(met)));
}

// The real coordinator: memory at rest, then 10,000 devices registered over gRPC and
// heartbeating once a second; its CPU over that time, less its CPU at rest.
void MeasureHeartbeatsAndMemory(const Mesh& mesh, Results* r) {
  const int devices = absl::GetFlag(FLAGS_devices);
  const double seconds = absl::GetFlag(FLAGS_heartbeat_seconds);
  const pid_t pid = mesh.coordinator->pid();
  const long idle_rss = RssKb(pid);

  const double rest_start = CpuSeconds(pid);
  const auto rest_clock = SteadyClock::now();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const double rest_rate = (CpuSeconds(pid) - rest_start) /
                           std::chrono::duration<double>(SteadyClock::now() - rest_clock).count();

  auto channel = grpc::CreateChannel(mesh.coordinator_address, grpc::InsecureChannelCredentials());
  auto registry = v1::Registry::NewStub(channel);
  constexpr int kThreads = 8;
  std::vector<std::string> leases(devices);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < devices; i += kThreads) {
          grpc::ClientContext context;
          context.set_deadline(In(10));
          v1::RegisterResponse response;
          v1::RegisterRequest request = FakeDevice(i);
          *request.mutable_join() = MakeJoinProof(
              IssueJoinToken(mesh.join_secret, request.device_id(), request.provider_id()),
              request.device_id(), request.provider_id(), absl::Now());
          grpc::Status s = registry->Register(&context, request, &response);
          if (!s.ok()) Die("register: " + s.error_message());
          leases[i] = response.lease_id();
        }
      });
    }
    for (auto& t : threads) t.join();
  }

  std::atomic<long> sent{0};
  const double cpu_start = CpuSeconds(pid);
  const auto start = SteadyClock::now();
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        // Thread t owns devices t, t+8, ...; each once a second, evenly spread.
        const int mine = (devices - t + kThreads - 1) / kThreads;
        const auto period = std::chrono::microseconds(1'000'000 / std::max(1, mine));
        for (long k = 0;; ++k) {
          const auto due = start + k * period;
          if (due - start >= std::chrono::duration<double>(seconds)) break;
          std::this_thread::sleep_until(due);
          const int i = t + static_cast<int>(k % mine) * kThreads;
          v1::HeartbeatRequest h;
          h.set_device_id(absl::StrCat("fake-", i));
          h.set_lease_id(leases[i]);
          h.mutable_load()->set_active(static_cast<int>(k % 4));
          h.mutable_load()->set_max_concurrency(4);
          grpc::ClientContext context;
          context.set_deadline(In(10));
          v1::HeartbeatResponse response;
          if (registry->Heartbeat(&context, h, &response).ok()) ++sent;
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  const double wall = std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double fraction = (CpuSeconds(pid) - cpu_start) / wall - rest_rate;
  const long rss_10k = RssKb(pid);
  r->j["selector"]["heartbeat_cpu_fraction"] = fraction;
  r->j["selector"]["heartbeats_per_s"] = sent.load() / wall;
  r->j["memory"] = {{"idle_rss_kb", idle_rss}, {"rss_10k_devices_kb", rss_10k}};
  Line(r, absl::StrFormat("heartbeats: %.0f/s from %d devices cost the coordinator %.1f%% of one "
                          "core (at rest: %.1f%%)",
                          sent.load() / wall, devices, 100 * fraction, 100 * rest_rate));
  Line(r, absl::StrFormat("  target <= 50%% of one core: %s", Verdict(fraction <= 0.5)));
  Line(r, absl::StrFormat("memory: coordinator RSS at rest %ld kB, with %d devices %ld kB (%.1f kB "
                          "per device)",
                          idle_rss, devices, rss_10k,
                          static_cast<double>(rss_10k - idle_rss) / std::max(1, devices)));
}

int Main() {
  const bool pin = absl::GetFlag(FLAGS_pin);
  if (pin) PinTo(1);  // the client; every thread started from here inherits it
  const std::string bin = std::filesystem::canonical("/proc/self/exe").parent_path().string();
  std::string dir = absl::GetFlag(FLAGS_dir);
  const bool own_dir = dir.empty();
  if (own_dir) {
    char pattern[] = "/tmp/loom-bench-XXXXXX";
    if (!mkdtemp(pattern)) Die("mkdtemp failed");
    dir = pattern;
  }
  Results r;
  r.j["grpc_version"] = grpc::Version();
  r.j["cpus_pinned"] = pin;
  const double fsync = FsyncP50Us({dir, "FULL"});
  r.j["fsync_p50_us"] = fsync;
  Line(&r, absl::StrFormat("loom_bench: gRPC %s, one durable SQLite commit (fsync) p50 %.0f us, "
                           "work dir %s",
                           grpc::Version(), fsync, dir));
  Line(&r, "All times in microseconds.");
  const std::vector<std::string> only = absl::GetFlag(FLAGS_only);
  auto wanted = [&](const char* part) {
    return only.empty() || std::find(only.begin(), only.end(), part) != only.end();
  };
  Percentiles sqlite_pass;
  if (wanted("mesh") || wanted("engines")) {
    Mesh mesh = StartMesh(bin, dir, pin);
    sqlite_pass = MeasureHops(mesh, &r, fsync);
    if (wanted("mesh")) {
      MeasureCompiled(mesh, &r, fsync);
      MeasureHeartbeatsAndMemory(mesh, &r);
    }
  }
  if (wanted("ledger")) MeasureLedger(dir, &r);
  if (absl::GetFlag(FLAGS_engines) && wanted("engines")) {
    MeasureEngineColumn(bin, dir, pin, sqlite_pass, &r);
  }
  if (wanted("selector")) MeasureSelector(&r);
  if (absl::GetFlag(FLAGS_json)) {
    std::cout << r.j.dump(2) << "\n";
  } else {
    // The table went out line by line.
  }
  if (own_dir) std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace loom::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures Loom's coordinator beside a raw gRPC hop and its ledger beside raw SQLite, in "
      "one run.\n  loom_bench [--json] [--requests=N] [--seconds=S] [--devices=N]");
  absl::ParseCommandLine(argc, argv);
  // As the daemons run (they turn off the deadlock detection Debian's Abseil has on), so that
  // the in-process runs (selector, ledger) measure the locks the coordinator takes.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return loom::bench::Main();
}
