// loom-coordinator: the mesh's front door. Parses flags, wires registry, device client, ledger
// and request runner behind the Registry and Orchestrator services, serves until SIGINT/SIGTERM.
#include <iostream>
#include <string>

#include <spdlog/spdlog.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/flags_usage.h"
#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/grpc_server.h"
#include "common/json_config.h"
#include "common/logging.h"
#include "common/ready_file.h"
#include "common/shutdown.h"
#include "coordinator/authenticator.h"
#include "coordinator/grpc_device_client.h"
#include "coordinator/http_front_door.h"
#include "coordinator/metrics.h"
#include "coordinator/orchestrator_service.h"
#include "coordinator/registry.h"
#include "coordinator/registry_service.h"
#include "coordinator/request_runner.h"
#include "ledger/sqlite_ledger.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:7070", "Address of the gRPC API (port 0: any).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "Address of the OpenAI-compatible HTTP API (port 0: any; empty: no HTTP).");
ABSL_FLAG(std::string, allow_anonymous, "",
          "Serve requests without an API key, charged to this client account (local demos only).");
ABSL_FLAG(int64_t, request_timeout_ms, 300000, "Deadline of a request when the client sets none.");
ABSL_FLAG(std::string, ledger_db, "loom.db", "SQLite ledger file (created if missing).");
ABSL_FLAG(std::string, ledger_synchronous, "FULL", "SQLite synchronous setting: FULL, NORMAL or OFF.");
ABSL_FLAG(int32_t, fee_bps, 0, "Coordinator fee on every settlement, basis points (0-10000), paid to 'fee'.");
ABSL_FLAG(std::string, ready_file, "", "Write {\"grpc\": ADDRESS, ...} here once serving.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 1000, "Heartbeat interval asked of workers.");
ABSL_FLAG(int32_t, missed_heartbeats, 3, "A device silent this many intervals is removed.");
ABSL_FLAG(int32_t, max_attempts, 3, "Attempts per sub-task, each on another device.");
ABSL_FLAG(int64_t, attempt_timeout_ms, 60000, "Deadline of one attempt on one device.");
ABSL_FLAG(int32_t, request_threads, 32, "Requests served at once.");
ABSL_FLAG(std::string, decomposer, "auto",
          "auto: ask the smallest real (non-simulated) model for the sub-task graph, else rules; "
          "model: ask a model even if simulated; rules: always rule-based.");
ABSL_FLAG(std::string, decomposer_model, "", "Model the decomposer asks (default: the smallest).");
ABSL_FLAG(std::string, judge_model, "", "Model that judges compete answers (default: agreement).");
ABSL_FLAG(int32_t, compete_k, 3, "Distinct models that answer a compete request.");
ABSL_FLAG(std::string, affinity_config, "",
          "JSON AffinityConfig overriding the default family x category affinity table.");
ABSL_FLAG(double, load_weight, 0.6, "How much a fully loaded device's score drops (0-1).");

namespace {

int Fail(const std::string& message) {
  std::cerr << "loom-coordinator: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  loom::SetUsage(
      "loom-coordinator --grpc_listen=HOST:PORT --ledger_db=FILE\n"
      "Accepts workers (Registry) and client requests (Orchestrator), settles credits in the "
      "ledger.");
  loom::BlockShutdownSignals();
  absl::ParseCommandLine(argc, argv);
  if (auto s = loom::InitLogging("loom-coordinator", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) < 10) return Fail("--heartbeat_interval_ms must be >= 10");
  if (absl::GetFlag(FLAGS_missed_heartbeats) < 2) return Fail("--missed_heartbeats must be >= 2");
  if (absl::GetFlag(FLAGS_max_attempts) < 1) return Fail("--max_attempts must be >= 1");
  if (absl::GetFlag(FLAGS_request_threads) < 1) return Fail("--request_threads must be >= 1");

  auto ledger = loom::SqliteLedger::Open({.path = absl::GetFlag(FLAGS_ledger_db),
                                          .synchronous = absl::GetFlag(FLAGS_ledger_synchronous),
                                          .fee_bps = absl::GetFlag(FLAGS_fee_bps)});
  if (!ledger.ok()) return Fail(std::string(ledger.status().message()));

  loom::DeviceRegistry registry(
      {.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms)),
       .missed_heartbeats_to_expire = absl::GetFlag(FLAGS_missed_heartbeats)},
      loom::Clock::Real());
  loom::AffinityTable affinity = loom::AffinityTable::Defaults();
  if (!absl::GetFlag(FLAGS_affinity_config).empty()) {
    auto config = loom::LoadConfigFile<loom::v1::AffinityConfig>(absl::GetFlag(FLAGS_affinity_config));
    if (!config.ok()) return Fail(std::string(config.status().message()));
    if (auto s = affinity.Apply(*config); !s.ok()) {
      return Fail(absl::StrCat(absl::GetFlag(FLAGS_affinity_config), ": ", s.message()));
    }
  }
  const double load_weight = absl::GetFlag(FLAGS_load_weight);
  if (load_weight < 0 || load_weight > 1) return Fail("--load_weight must be in [0, 1]");
  loom::RunnerOptions options;
  options.attempts.max_attempts = absl::GetFlag(FLAGS_max_attempts);
  options.attempts.attempt_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_attempt_timeout_ms));
  const std::string decomposer = absl::GetFlag(FLAGS_decomposer);
  if (decomposer == "auto") {
    options.decomposer.mode = loom::DecomposerOptions::Mode::kAuto;
  } else if (decomposer == "model") {
    options.decomposer.mode = loom::DecomposerOptions::Mode::kModel;
  } else if (decomposer == "rules") {
    options.decomposer.mode = loom::DecomposerOptions::Mode::kRules;
  } else {
    return Fail("--decomposer must be auto, model or rules");
  }
  options.decomposer.model = absl::GetFlag(FLAGS_decomposer_model);
  options.compete.judge_model = absl::GetFlag(FLAGS_judge_model);
  options.compete.k = absl::GetFlag(FLAGS_compete_k);
  if (options.compete.k < 1 || options.compete.k > 8) return Fail("--compete_k must be 1-8");

  if (absl::GetFlag(FLAGS_request_timeout_ms) < 100) return Fail("--request_timeout_ms must be >= 100");
  options.request_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_request_timeout_ms));

  loom::ModelSelector selector(std::move(affinity), {.load_weight = load_weight});
  loom::GrpcDeviceClient device_client;
  loom::Metrics metrics;
  loom::RequestRunner runner(options, &registry, &selector, &device_client, ledger->get(),
                             loom::Clock::Real(), &metrics);
  loom::Authenticator auth(ledger->get(), absl::GetFlag(FLAGS_allow_anonymous));
  if (!absl::GetFlag(FLAGS_allow_anonymous).empty()) {
    spdlog::warn("serving requests without an API key, charged to client:{} (--allow_anonymous)",
                 absl::GetFlag(FLAGS_allow_anonymous));
  }
  loom::RegistryService registry_service(&registry);
  loom::OrchestratorService orchestrator_service(&runner, &registry, &auth,
                                                 absl::GetFlag(FLAGS_request_threads));
  loom::HttpFrontDoor http({.request_timeout = options.request_timeout}, &runner, &registry, &auth,
                           &metrics);

  auto started = loom::StartGrpcServer(absl::GetFlag(FLAGS_grpc_listen),
                                       {&registry_service, &orchestrator_service});
  if (!started.ok()) return Fail(std::string(started.status().message()));
  std::string http_address;
  if (!absl::GetFlag(FLAGS_http_listen).empty()) {
    auto bound = http.Start(absl::GetFlag(FLAGS_http_listen));
    if (!bound.ok()) return Fail(std::string(bound.status().message()));
    http_address = *bound;
  }
  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    auto s = loom::WriteFileAtomically(
        ready_file, absl::StrCat("{\"grpc\": \"", started->address, "\", \"http\": \"",
                                 http_address, "\", \"pid\": ", getpid(), "}\n"));
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  spdlog::info("coordinator serving gRPC on {}, HTTP on {}, ledger {}", started->address,
               http_address.empty() ? "(off)" : http_address, absl::GetFlag(FLAGS_ledger_db));

  loom::ShutdownWaiter waiter;
  int code = waiter.Wait();
  http.Stop();
  loom::StopGrpcServer(started->server.get(), absl::Seconds(5));
  spdlog::info("stopped");
  return code;
}
