// loom-coordinator: the mesh's front door. Parses flags, wires registry, device client, ledger
// and request runner behind the Registry and Orchestrator services, serves until SIGINT/SIGTERM.
#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "common/flags_usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/clock.h"
#include "common/grpc_server.h"
#include "common/json_config.h"
#include "common/logging.h"
#include "common/ready_file.h"
#include "common/join_token.h"
#include "common/shutdown.h"
#include "common/tls.h"
#include "common/tls_flags.h"
#include "coordinator/mesh/device_auth.h"
#include "coordinator/front/authenticator.h"
#include "coordinator/mesh/grpc_device_client.h"
#include "coordinator/front/console_api.h"
#include "coordinator/front/http_front_door.h"
#include "coordinator/pipeline/request_log.h"
#include "coordinator/pipeline/metrics.h"
#include "coordinator/front/orchestrator_service.h"
#include "coordinator/mesh/outcome_model.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/mesh/registry_service.h"
#include "coordinator/pipeline/request_runner.h"
#include "ledger/pricing.h"
#include "ledger/ledger_open.h"

ABSL_FLAG(std::string, grpc_listen, "127.0.0.1:7070", "Address of the gRPC API (port 0: any).");
ABSL_FLAG(std::string, http_listen, "127.0.0.1:8080",
          "Address of the OpenAI-compatible HTTP API (port 0: any; empty: no HTTP).");
ABSL_FLAG(std::string, allow_anonymous, "",
          "Serve requests without an API key, charged to this client account (local demos only).");
ABSL_FLAG(std::string, console_operator_key_file, "",
          "A file holding the web console's operator key (16+ characters): a bearer key that sees "
          "the whole mesh, every request and all money at /console/. Empty: clients and providers "
          "see their own views only.");
ABSL_FLAG(int32_t, console_recent_requests, 200,
          "Recent requests kept in memory for the web console.");
ABSL_FLAG(int32_t, http_max_connections, 4096,
          "HTTP connections open at once (idle ones cost memory, not threads); more are closed at "
          "accept. Raised to fit the descriptor limit.");
ABSL_FLAG(int32_t, http_max_connections_per_peer, 512,
          "HTTP connections open at once from one client address (0: no limit).");
ABSL_FLAG(int32_t, http_read_timeout_s, 10,
          "A request's whole head and body must arrive within this of its first byte.");
ABSL_FLAG(std::vector<std::string>, cors_origins, {},
          "Browser origins allowed to call the HTTP API (CORS), comma-separated, e.g. "
          "https://app.example.com; '*' allows any. Empty (the default): no CORS headers.");
ABSL_FLAG(bool, metrics_require_key, false,
          "/metrics answers only requests with an API key (give Prometheus one as its "
          "authorization credentials).");
ABSL_FLAG(bool, drop_params, false,
          "Drop OpenAI request fields no device honours yet (tools, response_format json, n > 1, "
          "logprobs, ...) and name them in x-loom-dropped-params, instead of refusing with 400.");
ABSL_FLAG(int32_t, http_keep_alive_s, 15, "An idle HTTP keep-alive connection is closed after this.");
ABSL_FLAG(int64_t, request_timeout_ms, 300000, "Deadline of a request when the client sets none.");
ABSL_FLAG(std::string, ledger_db, "loom.db", "SQLite ledger file (created if missing); see --ledger.");
ABSL_FLAG(std::string, ledger, "",
          "The ledger: sqlite:PATH (default: sqlite:<--ledger_db>) or postgresql://USER@HOST:PORT/DB, "
          "which several coordinators may share (each with its own --instance_id).");
ABSL_FLAG(std::string, ledger_password_file, "",
          "PostgreSQL: a file holding the password (else PGPASSWORD or ~/.pgpass).");
ABSL_FLAG(std::string, ledger_synchronous, "FULL", "SQLite synchronous setting: FULL, NORMAL or OFF.");
ABSL_FLAG(int64_t, max_price_per_1k, 100,
          "The most a device may charge per 1,000 output tokens, in credits (1-1000000); "
          "devices asking more are refused at registration.");
ABSL_FLAG(std::string, instance_id, "coordinator",
          "This coordinator's name on its ledger's reservations; at start it releases those an "
          "earlier run left. Give each coordinator sharing a ledger its own.");
ABSL_FLAG(absl::Duration, answer_retention, absl::Hours(24),
          "How long the answer of a request that named its own id (X-Request-Id, "
          "Idempotency-Key, request_id) is kept, so that a retry with that id gets it again "
          "instead of running twice (0: keep none; the id is still never run twice).");
ABSL_FLAG(int32_t, fee_bps, 0, "Coordinator fee on every settlement, basis points (0-10000), paid to 'fee'.");
ABSL_FLAG(std::string, ready_file, "", "Write {\"grpc\": ADDRESS, ...} here once serving.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
ABSL_FLAG(int64_t, heartbeat_interval_ms, 1000, "Heartbeat interval asked of workers.");
ABSL_FLAG(int32_t, missed_heartbeats, 3, "A device silent this many intervals is removed.");
ABSL_FLAG(int32_t, max_attempts, 3, "Attempts per sub-task, each on another device.");
ABSL_FLAG(int64_t, attempt_timeout_ms, 60000, "Deadline of one attempt on one device.");
ABSL_FLAG(int32_t, request_threads, 64,
          "Requests running at once, gRPC and HTTP together. Up to as many more wait for a slot, "
          "the waiting room shared out equally among the clients waiting, and freed slots go to "
          "those clients in turn; past its share a request gets RESOURCE_EXHAUSTED / HTTP 429.");
ABSL_FLAG(std::string, decomposer, "auto",
          "auto: ask the smallest real (non-simulated) model for the sub-task graph, else rules; "
          "model: ask a model even if simulated; rules: always rule-based.");
ABSL_FLAG(std::string, decomposer_model, "", "Model the decomposer asks (default: the smallest).");
ABSL_FLAG(bool, analyzer_router, false,
          "Ask a real model on the mesh what a request is when the category classifier is unsure "
          "(a short JSON reply under a deadline, cached; a failure keeps the classifier's verdict).");
ABSL_FLAG(std::string, analyzer_router_model, "",
          "Model the router asks (default: the smallest real, non-simulated one).");
ABSL_FLAG(double, analyzer_router_below, 0.5,
          "Consult the router when the classifier's best probability is under this (0 to 1).");
ABSL_FLAG(int64_t, analyzer_router_timeout_ms, 2500, "Deadline of the router's call.");
ABSL_FLAG(int64_t, max_compiled_history_tokens, 2048,
          "A request whose conversation before its ask is longer than this many tokens goes to "
          "one model whole instead of being compiled (each part would be sent the conversation).");
ABSL_FLAG(std::string, judge_model, "", "Model that judges compete answers (default: agreement).");
ABSL_FLAG(int32_t, compete_k, 3, "Distinct models that answer a compete request.");
ABSL_FLAG(double, compete_participant_share, 1.0,
          "Compete payout: the winner is paid in full, every other candidate this share (0-1) "
          "of its tokens' price.");
ABSL_FLAG(std::string, policy_config, "",
          "JSON PolicyConfig: named policies (model names such as loom-fast), each provider's "
          "trust tier, carbon intensity by region. Built-in policies apply without it.");
ABSL_FLAG(std::string, affinity_config, "",
          "JSON AffinityConfig overriding the default family x category affinity table.");
ABSL_FLAG(double, load_weight, 0.6, "How much a fully loaded device's score drops (0-1).");
ABSL_FLAG(int64_t, outcomes_refresh_ms, 10000,
          "Re-read the learnt affinities from the ledger this often (0: only at start), so that "
          "coordinators sharing a ledger learn from each other's compete verdicts and feedback.");
ABSL_FLAG(bool, explore_affinities, false,
          "Thompson sampling: unpinned selections score each model with a draw from its "
          "observed-outcome posterior instead of its mean, so models with few observations are "
          "tried now and then. Pinned requests never explore.");
ABSL_FLAG(std::string, join_secret_file, "",
          "Secret behind join tokens (created, mode 0600, if missing). Without "
          "--tls_client_ca, workers prove their device id with a token derived from it.");
ABSL_FLAG(std::string, issue_join_token, "",
          "Print the join token for DEVICE_ID[:PROVIDER] (provider defaults to the device id) "
          "under --join_secret_file, and exit.");
ABSL_FLAG(int64_t, reservation_margin_ms, 60000,
          "A request's credit reservation expires this long after its timeout, so one left by a "
          "crash frees itself.");
ABSL_FLAG(int32_t, max_requests_per_client, 32,
          "Requests one client may have running at once (0: no limit but --request_threads); "
          "more get RESOURCE_EXHAUSTED / HTTP 429.");

namespace {

// Open connections need descriptors: the soft limit is raised to the hard one (often 1024 ->
// 524288), and the HTTP connection limit is kept below what is left for devices, the
// ledger and gRPC.
int MaxConnections(int wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur == RLIM_INFINITY) return wanted;
  const int64_t room = static_cast<int64_t>(limit.rlim_cur) - 256;
  if (room < wanted) {
    spdlog::warn("--http_max_connections={} lowered to {}: the descriptor limit is {}", wanted,
                 std::max<int64_t>(room, 16), limit.rlim_cur);
    return static_cast<int>(std::max<int64_t>(room, 16));
  }
  return wanted;
}

int Fail(const std::string& message) {
  std::cerr << "loom-coordinator: " << message << "\n";
  return 2;
}

}  // namespace

// Long on purpose: the daemon's wiring, read top to bottom — flags checked, each component
// built after what it depends on, the doors started, then the wait for a stop signal. Logic
// of its own belongs in the components, not here.
int main(int argc, char** argv) {
  loom::SetUsage(
      "loom-coordinator --grpc_listen=HOST:PORT --ledger_db=FILE\n"
      "  (--tls_cert=C --tls_key=K --tls_client_ca=CA | --plaintext --join_secret_file=F)\n"
      "loom-coordinator --join_secret_file=F --issue_join_token=DEVICE[:PROVIDER]\n"
      "Accepts workers (Registry) and client requests (Orchestrator), settles credits in the "
      "ledger.");
  loom::BlockShutdownSignals();
  // Debian's Abseil checks every mutex acquisition against a global lock graph (deadlock
  // detection, on in its build). The unit and integration tests keep that check; the daemons
  // skip its cost on every lock of the request path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::ParseCommandLine(argc, argv);
  if (auto s = loom::InitLogging("loom-coordinator", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::GetFlag(FLAGS_heartbeat_interval_ms) < 10) return Fail("--heartbeat_interval_ms must be >= 10");
  if (absl::GetFlag(FLAGS_missed_heartbeats) < 2) return Fail("--missed_heartbeats must be >= 2");
  if (absl::GetFlag(FLAGS_max_attempts) < 1) return Fail("--max_attempts must be >= 1");
  if (absl::GetFlag(FLAGS_request_threads) < 1) return Fail("--request_threads must be >= 1");
  if (absl::GetFlag(FLAGS_http_max_connections) < 1) return Fail("--http_max_connections must be >= 1");
  if (absl::GetFlag(FLAGS_http_keep_alive_s) < 1) return Fail("--http_keep_alive_s must be >= 1");
  if (absl::GetFlag(FLAGS_max_price_per_1k) < 1 || absl::GetFlag(FLAGS_max_price_per_1k) > 1'000'000) {
    return Fail("--max_price_per_1k must be 1-1000000 credits");
  }
  if (absl::GetFlag(FLAGS_http_read_timeout_s) < 1) return Fail("--http_read_timeout_s must be >= 1");
  if (absl::GetFlag(FLAGS_http_max_connections_per_peer) < 0) {
    return Fail("--http_max_connections_per_peer must be >= 0");
  }
  std::string join_secret;
  if (!absl::GetFlag(FLAGS_join_secret_file).empty()) {
    auto secret = loom::LoadOrCreateJoinSecret(absl::GetFlag(FLAGS_join_secret_file));
    if (!secret.ok()) return Fail(std::string(secret.status().message()));
    join_secret = *secret;
  }
  if (!absl::GetFlag(FLAGS_issue_join_token).empty()) {
    if (join_secret.empty()) return Fail("--issue_join_token needs --join_secret_file");
    const std::string spec = absl::GetFlag(FLAGS_issue_join_token);
    const size_t colon = spec.find(':');
    const std::string device = spec.substr(0, colon);
    const std::string provider = colon == std::string::npos ? device : spec.substr(colon + 1);
    if (!loom::IsValidId(device) || !loom::IsValidId(provider)) {
      return Fail("--issue_join_token: ids are 1-128 characters of A-Z a-z 0-9 . _ -");
    }
    std::cout << loom::IssueJoinToken(join_secret, device, provider) << "\n";
    return 0;
  }
  loom::TlsConfig tls = loom::TlsFromFlags();
  auto server_credentials = loom::ServerCredentialsFor(tls);
  if (!server_credentials.ok()) return Fail(std::string(server_credentials.status().message()));
  // Dialing workers: verify them against --tls_ca (default: the CA of their client certs).
  loom::TlsConfig dial = tls;
  if (dial.ca.empty()) dial.ca = dial.client_ca;
  auto worker_credentials = loom::ChannelCredentialsFor(dial);
  if (!worker_credentials.ok()) return Fail(std::string(worker_credentials.status().message()));
  loom::DeviceAuthOptions device_auth_options;
  if (!tls.client_ca.empty()) {
    device_auth_options.mode = loom::DeviceAuthOptions::Mode::kMutualTls;
  } else if (join_secret.empty()) {
    return Fail("workers must prove who they are: give --tls_client_ca (mutual TLS) or "
                "--join_secret_file (join tokens)");
  } else {
    device_auth_options.mode = loom::DeviceAuthOptions::Mode::kJoinToken;
    device_auth_options.join_secret = join_secret;
  }
  if (tls.plaintext) {
    spdlog::warn("--plaintext: clients, workers and the HTTP API are served without encryption; "
                 "devices prove their id with join tokens");
  }

  const std::string ledger_spec = absl::GetFlag(FLAGS_ledger).empty()
                                      ? absl::StrCat("sqlite:", absl::GetFlag(FLAGS_ledger_db))
                                      : absl::GetFlag(FLAGS_ledger);
  auto ledger = loom::OpenLedger(ledger_spec,
                                 {.fee_bps = absl::GetFlag(FLAGS_fee_bps),
                                  .holder = absl::GetFlag(FLAGS_instance_id),
                                  .answer_retention = absl::GetFlag(FLAGS_answer_retention),
                                  .sqlite_synchronous = absl::GetFlag(FLAGS_ledger_synchronous),
                                  .password_file = absl::GetFlag(FLAGS_ledger_password_file)});
  if (!ledger.ok()) return Fail(std::string(ledger.status().message()));
  // Holds a crashed predecessor left would keep its clients' credits for minutes.
  absl::StatusOr<int64_t> orphans = (*ledger)->ReleaseOrphans();
  if (!orphans.ok()) return Fail(std::string(orphans.status().message()));
  if (*orphans > 0) {
    spdlog::warn("released {} reservation(s) left by an earlier run of {} (it stopped without "
                 "settling them)", *orphans, absl::GetFlag(FLAGS_instance_id));
  }

  loom::PolicyBook policies;
  if (!absl::GetFlag(FLAGS_policy_config).empty()) {
    auto config = loom::LoadConfigFile<loom::v1::PolicyConfig>(absl::GetFlag(FLAGS_policy_config));
    if (!config.ok()) return Fail(std::string(config.status().message()));
    auto book = loom::PolicyBook::FromConfig(*config);
    if (!book.ok()) {
      return Fail(absl::StrCat(absl::GetFlag(FLAGS_policy_config), ": ", book.status().message()));
    }
    policies = *std::move(book);
  }
  loom::DeviceRegistry registry(
      {.heartbeat_interval = absl::Milliseconds(absl::GetFlag(FLAGS_heartbeat_interval_ms)),
       .missed_heartbeats_to_expire = absl::GetFlag(FLAGS_missed_heartbeats),
       .max_price_per_1k_micro = absl::GetFlag(FLAGS_max_price_per_1k) * loom::kMicroPerCredit,
       .provider_trust = policies.provider_trust(),
       .default_trust = policies.default_trust(),
       .carbon_by_region = policies.carbon_by_region()},
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
  // What compete verdicts, missed deadlines and clients' feedback teach about each model,
  // kept in the ledger database: read back at start, so it survives restarts.
  loom::OutcomeModel outcomes({}, ledger->get());
  if (absl::Status loaded = outcomes.Load(); !loaded.ok()) {
    return Fail(absl::StrCat("reading the learnt affinities from the ledger: ", loaded.ToString()));
  }
  if (const size_t learnt = outcomes.Counts().size(); learnt > 0) {
    spdlog::info("learnt affinities: {} (model, category) pairs with observed outcomes", learnt);
  }
  loom::RunnerOptions options;
  options.outcomes = &outcomes;
  options.attempts.outcomes = &outcomes;
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
  options.router.enabled = absl::GetFlag(FLAGS_analyzer_router);
  options.router.model = absl::GetFlag(FLAGS_analyzer_router_model);
  options.router.consult_below = absl::GetFlag(FLAGS_analyzer_router_below);
  if (options.router.consult_below < 0 || options.router.consult_below > 1) {
    return Fail("--analyzer_router_below must be between 0 and 1");
  }
  if (absl::GetFlag(FLAGS_analyzer_router_timeout_ms) <= 0) {
    return Fail("--analyzer_router_timeout_ms must be positive");
  }
  options.router.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_analyzer_router_timeout_ms));
  options.analyzer.max_compiled_history_tokens = absl::GetFlag(FLAGS_max_compiled_history_tokens);
  if (options.analyzer.max_compiled_history_tokens < 0) {
    return Fail("--max_compiled_history_tokens must be 0 or more");
  }
  options.compete.judge_model = absl::GetFlag(FLAGS_judge_model);
  options.compete.k = absl::GetFlag(FLAGS_compete_k);
  if (options.compete.k < 1 || options.compete.k > 8) return Fail("--compete_k must be 1-8");
  options.compete.participant_share = absl::GetFlag(FLAGS_compete_participant_share);
  if (!(options.compete.participant_share >= 0 && options.compete.participant_share <= 1)) {
    return Fail("--compete_participant_share must be from 0 to 1");
  }
  options.policies = policies;

  if (absl::GetFlag(FLAGS_request_timeout_ms) < 100) return Fail("--request_timeout_ms must be >= 100");
  options.request_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_request_timeout_ms));
  if (absl::GetFlag(FLAGS_reservation_margin_ms) < 0) return Fail("--reservation_margin_ms must be >= 0");
  options.reservation_margin = absl::Milliseconds(absl::GetFlag(FLAGS_reservation_margin_ms));
  if (absl::GetFlag(FLAGS_max_requests_per_client) < 0) {
    return Fail("--max_requests_per_client must be >= 0");
  }

  loom::ModelSelector selector(std::move(affinity),
                               {.load_weight = load_weight,
                                .outcomes = &outcomes,
                                .explore = absl::GetFlag(FLAGS_explore_affinities)});
  // In join-token mode every call challenges the worker to prove the device it was dialled as.
  const bool join_mode = device_auth_options.mode == loom::DeviceAuthOptions::Mode::kJoinToken;
  loom::GrpcDeviceClient device_client(*worker_credentials, !tls.plaintext, absl::Minutes(10),
                                       loom::Clock::Real(), join_mode ? join_secret : "");
  loom::Metrics metrics;
  if (absl::GetFlag(FLAGS_console_recent_requests) < 1) {
    return Fail("--console_recent_requests must be >= 1");
  }
  loom::RequestLog recent(absl::GetFlag(FLAGS_console_recent_requests));
  options.recent = &recent;
  std::string operator_key;
  if (const std::string path = absl::GetFlag(FLAGS_console_operator_key_file); !path.empty()) {
    std::ifstream in(path);
    std::stringstream buffer;
    buffer << in.rdbuf();
    operator_key = std::string(absl::StripAsciiWhitespace(buffer.str()));
    if (!in || operator_key.size() < 16) {
      return Fail(absl::StrCat("--console_operator_key_file ", path,
                               ": needs a key of 16 or more characters (e.g. openssl rand -hex 24 > ",
                               path, ")"));
    }
  }
  loom::RequestRunner runner(options, &registry, &selector, &device_client, ledger->get(),
                             loom::Clock::Real(), &metrics);
  loom::EmbeddingRunner embeddings({.reservation_margin = options.reservation_margin}, &registry,
                                   &device_client, ledger->get(), loom::Clock::Real());
  loom::Authenticator auth(ledger->get(), absl::GetFlag(FLAGS_allow_anonymous));
  if (!absl::GetFlag(FLAGS_allow_anonymous).empty()) {
    spdlog::warn("serving requests without an API key, charged to client:{} (--allow_anonymous)",
                 absl::GetFlag(FLAGS_allow_anonymous));
  }
  loom::DeviceAuth device_auth(device_auth_options, loom::Clock::Real());
  loom::RegistryService registry_service(&registry, &device_auth);
  // One admission for both doors: a client's requests count the same on gRPC and HTTP.
  loom::Admission admission({.slots = absl::GetFlag(FLAGS_request_threads),
                             .max_waiting = absl::GetFlag(FLAGS_request_threads),
                             .max_running_per_client = absl::GetFlag(FLAGS_max_requests_per_client)});
  loom::OrchestratorService orchestrator_service(&runner, &registry, &auth, &admission);
  loom::ConsoleApi console(&registry, &runner, &recent, &auth, ledger->get(), operator_key);
  loom::HttpFrontDoor http({.request_timeout = options.request_timeout,
                            .max_connections = MaxConnections(absl::GetFlag(FLAGS_http_max_connections)),
                            .max_connections_per_peer = absl::GetFlag(FLAGS_http_max_connections_per_peer),
                            .keep_alive_timeout = absl::Seconds(absl::GetFlag(FLAGS_http_keep_alive_s)),
                            .read_timeout = absl::Seconds(absl::GetFlag(FLAGS_http_read_timeout_s)),
                            .drop_params = absl::GetFlag(FLAGS_drop_params),
                            .cors_origins = absl::GetFlag(FLAGS_cors_origins),
                            .metrics_require_key = absl::GetFlag(FLAGS_metrics_require_key),
                            .tls_cert = tls.plaintext ? "" : tls.cert,
                            .tls_key = tls.plaintext ? "" : tls.key},
                           &runner, &registry, &auth, &admission, &metrics, &embeddings,
                           &console);

  auto started = loom::StartGrpcServer(absl::GetFlag(FLAGS_grpc_listen),
                                       {&registry_service, &orchestrator_service},
                                       *server_credentials,
                                       {loom::v1::Registry::service_full_name(),
                                        loom::v1::Orchestrator::service_full_name()});
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
  // A password in the URI is not logged.
  std::string shown_ledger = ledger_spec;
  if (const size_t scheme = shown_ledger.find("://"), at = shown_ledger.find('@');
      scheme != std::string::npos && at != std::string::npos && at > scheme) {
    const size_t colon = shown_ledger.find(':', scheme + 3);
    if (colon != std::string::npos && colon < at) shown_ledger.replace(colon, at - colon, ":***");
  }
  spdlog::info("coordinator serving gRPC on {}, HTTP on {}, ledger {}", started->address,
               http_address.empty() ? "(off)" : http_address, shown_ledger);
  if (!http_address.empty()) {
    spdlog::info("web console at {}://{}/console/{}", tls.plaintext ? "http" : "https",
                 http_address, operator_key.empty() ? " (no operator key: clients and providers "
                                                      "see their own views)" : "");
  }

  // What other coordinators on the same ledger learn reaches this one on a timer.
  absl::Notification stop_refresh;
  std::thread refresh;
  if (const int64_t every = absl::GetFlag(FLAGS_outcomes_refresh_ms); every > 0) {
    refresh = std::thread([&, every] {
      while (!stop_refresh.WaitForNotificationWithTimeout(absl::Milliseconds(every))) {
        if (absl::Status s = outcomes.Load(); !s.ok()) {
          spdlog::warn("re-reading the learnt affinities failed ({}); keeping the last ones",
                       s.ToString());
        }
      }
    });
  }
  loom::ShutdownWaiter waiter;
  int code = waiter.Wait();
  stop_refresh.Notify();
  if (refresh.joinable()) refresh.join();
  http.Stop();
  loom::StopGrpcServer(started->server.get(), absl::Seconds(5));
  spdlog::info("stopped");
  return code;
}
