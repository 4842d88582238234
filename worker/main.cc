// loom-worker: puts one device into the mesh. Parses flags, builds the Worker service and the
// registrar, serves until SIGINT/SIGTERM, then deregisters.
#include <atomic>
#include <iostream>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/flags/parse.h"
#include "absl/synchronization/mutex.h"
#include "common/flags_usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/grpc_server.h"
#include "common/json_config.h"
#include "common/logging.h"
#include "common/protocol.h"
#include "common/ready_file.h"
#include "common/shutdown.h"
#include "common/tls.h"
#include "common/tls_flags.h"
#include "worker/openai_provider.h"
#include "worker/registrar.h"
#include "worker/upstream_monitor.h"
#include "worker/worker_config.h"
#include "worker/worker_service.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070",
          "Coordinator gRPC address (host:port), or several separated by commas: the device "
          "registers and heartbeats with each (coordinators sharing one ledger, issue 19).");
ABSL_FLAG(std::string, listen, "127.0.0.1:0", "Where to serve the Worker service (port 0: any).");
ABSL_FLAG(std::string, advertise_address, "",
          "Address the coordinator should dial; default: the bound --listen address.");
ABSL_FLAG(std::string, config, "", "Worker config file (JSON WorkerConfig). Replaces the quick flags.");
ABSL_FLAG(std::string, ready_file, "", "Write {\"grpc\": ADDRESS, ...} here once serving.");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error or off.");
// Quick flags: one simulated model without a config file.
ABSL_FLAG(std::string, device_id, "", "Device id (overrides the config's).");
ABSL_FLAG(std::string, provider_id, "", "Provider (account) paid for this device (overrides the config's).");
ABSL_FLAG(std::string, model, "",
          "Quick: serve one model of this name: simulated, or with --openai_base_url the "
          "server's model of that name.");
ABSL_FLAG(std::string, family, "", "Quick: model family (default: guessed from the name).");
ABSL_FLAG(double, parameters_b, 0,
          "Quick: billions of parameters (0: what the model server says, llama-server and "
          "Ollama do; else 7).");
ABSL_FLAG(int64_t, price_per_1k_micro, 0, "Quick: micro-credits per 1k output tokens (0: by size).");
ABSL_FLAG(int32_t, max_concurrency, 0, "Generations at once (0: config or 4).");
ABSL_FLAG(std::string, region, "",
          "Where this device runs, for clients' region limits (e.g. eu-west; overrides the config's).");
ABSL_FLAG(double, carbon_g_per_kwh, -1,
          "Carbon intensity of this device's power, gCO2e/kWh, for carbon-aware routing "
          "(-1: undeclared; the coordinator may know its region's).");
ABSL_FLAG(int32_t, upstream_check_interval_ms, 15000,
          "How often the model server is checked (a failing one sooner, with backoff up to "
          "this); while it cannot serve, the device gets no work.");
ABSL_FLAG(int64_t, sim_ttft_ms, 0, "Quick: simulated time to first token.");
ABSL_FLAG(double, sim_tokens_per_second, 0, "Quick: simulated speed (0: as fast as possible).");
ABSL_FLAG(int64_t, sim_output_tokens, 64, "Quick: simulated answer length in tokens.");
ABSL_FLAG(std::string, openai_base_url, "",
          "Quick: serve --model (or, with --discover, every model) of this OpenAI-compatible "
          "server, e.g. http://127.0.0.1:11434/v1 (Ollama) or http://127.0.0.1:8080/v1 "
          "(llama-server).");
ABSL_FLAG(std::string, openai_api_key, "", "Quick: bearer token for --openai_base_url.");
ABSL_FLAG(std::vector<std::string>, capabilities, {},
          "Quick: what the --openai_base_url server honours beyond text for these models: "
          "tools, json_schema, vision, continue (comma-separated). Requests needing one go only "
          "to models that advertise it. Simulated devices honour tools, json_schema and "
          "continue. 'embeddings' makes the model an embedding model (/v1/embeddings only; "
          "--discover tells them by name).");
ABSL_FLAG(bool, discover, false, "Quick: advertise every model the server lists at GET /models.");
ABSL_FLAG(double, sim_usage_claim_factor, 0,
          "Quick: a lying simulated device that reports this many times the tokens it sent.");
ABSL_FLAG(std::string, join_token, "",
          "Token the coordinator issued for this device (loom-coordinator --issue_join_token); "
          "proves the device id when no TLS client certificate is used.");
ABSL_FLAG(std::string, sim_fault, "",
          "Quick: inject a fault, KIND:N with KIND fail, hang or exit after N tokens.");

namespace {

int Fail(const std::string& message) {
  std::cerr << "loom-worker: " << message << "\n";
  return 2;
}

absl::StatusOr<loom::v1::SimFault> ParseFault(const std::string& spec) {
  loom::v1::SimFault fault;
  if (spec.empty()) return fault;
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int64_t n = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &n) || n < 0) {
    return absl::InvalidArgumentError("--sim_fault: expected KIND:N, e.g. fail:5");
  }
  if (parts[0] == "fail") {
    fault.set_kind(loom::v1::SimFault::KIND_FAIL);
  } else if (parts[0] == "hang") {
    fault.set_kind(loom::v1::SimFault::KIND_HANG);
  } else if (parts[0] == "exit") {
    fault.set_kind(loom::v1::SimFault::KIND_EXIT);
  } else {
    return absl::InvalidArgumentError("--sim_fault: KIND must be fail, hang or exit");
  }
  fault.set_after_tokens(n);
  return fault;
}

constexpr double kDefaultParametersB = 7;

// Long on purpose: one short block per command-line flag, in the order --help lists them.
absl::StatusOr<loom::v1::WorkerConfig> ConfigFromFlags() {
  loom::v1::WorkerConfig config;
  std::string origin = "flags";
  const std::string path = absl::GetFlag(FLAGS_config);
  if (!path.empty()) {
    auto loaded = loom::LoadConfigFile<loom::v1::WorkerConfig>(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
    origin = path;
  } else if (!absl::GetFlag(FLAGS_openai_base_url).empty()) {
    std::vector<std::string> names;
    std::set<std::string> embedding_names;
    // Sizes come from the server where it tells them; --parameters_b overrides.
    std::map<std::string, double> sizes;
    const bool size_given = absl::GetFlag(FLAGS_parameters_b) > 0;
    absl::StatusOr<std::vector<loom::OpenAIProvider::UpstreamModel>> listed =
        absl::GetFlag(FLAGS_discover) || !size_given
            ? loom::OpenAIProvider::ListModels(absl::GetFlag(FLAGS_openai_base_url),
                                               absl::GetFlag(FLAGS_openai_api_key))
            : absl::UnavailableError("not asked");
    std::vector<std::string> listed_names;
    if (listed.ok()) {
      for (const auto& m : *listed) {
        listed_names.push_back(m.id);
        if (m.parameters_b > 0) sizes[m.id] = m.parameters_b;
      }
    }
    if (absl::GetFlag(FLAGS_discover)) {
      if (!listed.ok()) return listed.status();
      // One model the worker cannot classify must not take the whole device down.
      loom::DiscoveredModels selected = loom::SelectDiscoveredModels(listed_names);
      for (const auto& [name, why] : selected.skipped) {
        spdlog::warn("--discover: skipping {}: {}", name, why);
      }
      if (selected.served.empty() && selected.embeddings.empty()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "--discover: none of the ", listed_names.size(), " models at ",
            absl::GetFlag(FLAGS_openai_base_url), " can be served (see the warnings)"));
      }
      names = std::move(selected.served);
      embedding_names.insert(selected.embeddings.begin(), selected.embeddings.end());
      names.insert(names.end(), selected.embeddings.begin(), selected.embeddings.end());
    } else if (!absl::GetFlag(FLAGS_model).empty()) {
      names.push_back(absl::GetFlag(FLAGS_model));
    } else {
      return absl::InvalidArgumentError("with --openai_base_url give --model=NAME or --discover");
    }
    for (const std::string& name : names) {
      auto* m = config.add_models();
      m->mutable_info()->set_name(name);
      m->mutable_info()->set_family(names.size() == 1 ? absl::GetFlag(FLAGS_family) : "");
      if (embedding_names.count(name)) m->mutable_info()->add_capabilities("embeddings");
      const auto size = sizes.find(name);
      m->mutable_info()->set_parameters_b(size_given              ? absl::GetFlag(FLAGS_parameters_b)
                                          : size != sizes.end() ? size->second
                                                                : kDefaultParametersB);
      if (!size_given && size == sizes.end()) {
        spdlog::info("{}: the server does not say its size; advertising {}B (--parameters_b)",
                     name, kDefaultParametersB);
      }
      m->mutable_info()->set_price_per_1k_micro(absl::GetFlag(FLAGS_price_per_1k_micro));
      if (!embedding_names.count(name)) {
        for (const std::string& c : absl::GetFlag(FLAGS_capabilities)) m->mutable_info()->add_capabilities(c);
      }
      m->mutable_openai()->set_base_url(absl::GetFlag(FLAGS_openai_base_url));
      m->mutable_openai()->set_api_key(absl::GetFlag(FLAGS_openai_api_key));
    }
  } else {
    if (absl::GetFlag(FLAGS_model).empty()) {
      return absl::InvalidArgumentError("give --config=FILE or --model=NAME (see --help)");
    }
    auto* m = config.add_models();
    m->mutable_info()->set_name(absl::GetFlag(FLAGS_model));
    m->mutable_info()->set_family(absl::GetFlag(FLAGS_family));
    m->mutable_info()->set_parameters_b(absl::GetFlag(FLAGS_parameters_b) > 0
                                            ? absl::GetFlag(FLAGS_parameters_b)
                                            : kDefaultParametersB);
    m->mutable_info()->set_price_per_1k_micro(absl::GetFlag(FLAGS_price_per_1k_micro));
    m->mutable_sim()->set_time_to_first_token_ms(absl::GetFlag(FLAGS_sim_ttft_ms));
    m->mutable_sim()->set_tokens_per_second(absl::GetFlag(FLAGS_sim_tokens_per_second));
    m->mutable_sim()->set_output_tokens(absl::GetFlag(FLAGS_sim_output_tokens));
    m->mutable_sim()->set_usage_claim_factor(absl::GetFlag(FLAGS_sim_usage_claim_factor));
    for (const std::string& c : absl::GetFlag(FLAGS_capabilities)) m->mutable_info()->add_capabilities(c);
  }
  auto fault = ParseFault(absl::GetFlag(FLAGS_sim_fault));
  if (!fault.ok()) return fault.status();
  if (fault->kind() != loom::v1::SimFault::KIND_NONE) {
    for (auto& m : *config.mutable_models()) {
      if (m.has_sim()) *m.mutable_sim()->mutable_fault() = *fault;
    }
  }
  if (!absl::GetFlag(FLAGS_device_id).empty()) config.set_device_id(absl::GetFlag(FLAGS_device_id));
  if (!absl::GetFlag(FLAGS_provider_id).empty()) {
    config.set_provider_id(absl::GetFlag(FLAGS_provider_id));
  }
  if (config.provider_id().empty()) config.set_provider_id(config.device_id());
  if (!absl::GetFlag(FLAGS_join_token).empty()) config.set_join_token(absl::GetFlag(FLAGS_join_token));
  if (absl::GetFlag(FLAGS_max_concurrency) != 0) {
    config.set_max_concurrency(absl::GetFlag(FLAGS_max_concurrency));
  }
  if (!absl::GetFlag(FLAGS_region).empty()) config.set_region(absl::GetFlag(FLAGS_region));
  if (absl::GetFlag(FLAGS_carbon_g_per_kwh) >= 0) {
    config.set_carbon_g_per_kwh(absl::GetFlag(FLAGS_carbon_g_per_kwh));
  }
  return loom::ValidateWorkerConfig(std::move(config), origin);
}

// A simulated device's configured speed (the slowest of its models; 0 when any is as fast as
// possible or not simulated): what it reports before it has measured one.
double SimulatedSpeed(const loom::v1::WorkerConfig& config) {
  double speed = 0;
  for (const auto& m : config.models()) {
    if (!m.has_sim() || m.sim().tokens_per_second() <= 0) return 0;
    speed = speed == 0 ? m.sim().tokens_per_second() : std::min(speed, m.sim().tokens_per_second());
  }
  return speed;
}

}  // namespace

// Long on purpose: the daemon's wiring, read top to bottom — config, backend, the worker
// service and its registrar, then the wait for a stop signal.
int main(int argc, char** argv) {
  loom::SetUsage(
      "loom-worker --coordinator=HOST:PORT (--config=FILE | --model=NAME --device_id=ID)\n"
      "  TLS: --tls_cert=DEV.crt --tls_key=DEV.key --tls_ca=ca.crt (deploy/dev-certs.sh), or\n"
      "  --plaintext --join_token=TOKEN.\n"
      "Serves one device's models to the Loom mesh. Examples:\n"
      "  loom-worker --coordinator=127.0.0.1:7070 --device_id=laptop --model=llama-3.1-8b   "
      "(simulated)\n"
      "  loom-worker --coordinator=127.0.0.1:7070 --device_id=laptop "
      "--openai_base_url=http://127.0.0.1:11434/v1 --discover   (Ollama)");
  loom::BlockShutdownSignals();
  // Debian's Abseil checks every mutex acquisition against a global lock graph (deadlock
  // detection, on in its build). The unit and integration tests keep that check; the daemons
  // skip its cost on every lock of the request path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::ParseCommandLine(argc, argv);
  if (auto s = loom::InitLogging("loom-worker", absl::GetFlag(FLAGS_log_level)); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  auto config = ConfigFromFlags();
  if (!config.ok()) return Fail(std::string(config.status().message()));

  loom::TlsConfig tls = loom::TlsFromFlags({.cert = config->tls().cert(),
                                            .key = config->tls().key(),
                                            .client_ca = config->tls().client_ca(),
                                            .ca = config->tls().ca(),
                                            .plaintext = config->tls().plaintext()});
  // The coordinator calls this worker with its certificate, signed by the same CA by default.
  if (!tls.plaintext && tls.client_ca.empty()) tls.client_ca = tls.ca;
  auto server_credentials = loom::ServerCredentialsFor(tls);
  if (!server_credentials.ok()) return Fail(std::string(server_credentials.status().message()));
  auto channel_credentials = loom::ChannelCredentialsFor(tls);
  if (!channel_credentials.ok()) return Fail(std::string(channel_credentials.status().message()));
  if (tls.plaintext) {
    spdlog::warn("--plaintext: the coordinator link and this worker's service are unencrypted "
                 "and the device proves its id only with its join token");
  }
  if (tls.plaintext && config->join_token().empty()) {
    return Fail("--plaintext needs --join_token (loom-coordinator --issue_join_token=DEVICE)");
  }

  auto models = loom::BuildServedModels(*config);
  if (!models.ok()) return Fail(std::string(models.status().message()));
  if (absl::GetFlag(FLAGS_upstream_check_interval_ms) <= 0) {
    return Fail("--upstream_check_interval_ms must be positive");
  }
  // Set below, once the service it checks exists; a failed generation asks for a check.
  loom::UpstreamMonitor* upstream = nullptr;
  loom::WorkerService service(
      loom::WorkerServiceOptions{.device_id = config->device_id(),
                                 .provider_id = config->provider_id(),
                                 .max_concurrency = config->max_concurrency(),
                                 .require_coordinator_peer = !tls.client_ca.empty(),
                                 .join_token = config->join_token(),
                                 .on_upstream_failure = [&upstream] {
                                   if (upstream != nullptr) upstream->Nudge();
                                 },
                                 .initial_tokens_per_second = SimulatedSpeed(*config)},
      *std::move(models));
  // A server still loading at start tells no sizes: they are read once it serves, and the
  // device registers again with them.
  // One registrar per coordinator; each is told when the advertisement changes.
  std::atomic<std::vector<std::unique_ptr<loom::Registrar>>*> registrars_ptr{nullptr};
  const bool sizes_from_server =
      !absl::GetFlag(FLAGS_openai_base_url).empty() && absl::GetFlag(FLAGS_config).empty() &&
      absl::GetFlag(FLAGS_parameters_b) <= 0;
  bool sizes_read = false;  // only on the monitor's thread
  loom::UpstreamMonitor monitor(
      {.interval = absl::Milliseconds(absl::GetFlag(FLAGS_upstream_check_interval_ms)),
       .on_change =
           [&](const std::string& problem) {
             auto* registrars = registrars_ptr.load();
             if (!problem.empty() || !sizes_from_server || sizes_read || registrars == nullptr) return;
             auto listed = loom::OpenAIProvider::ListModels(absl::GetFlag(FLAGS_openai_base_url),
                                                            absl::GetFlag(FLAGS_openai_api_key));
             if (!listed.ok()) return;
             sizes_read = true;
             bool learnt = false;
             for (const auto& m : *listed) {
               if (m.parameters_b <= 0) continue;
               service.SetParametersB(m.id, m.parameters_b);
               learnt = true;
             }
             if (learnt) {
               spdlog::info("the model server now tells its models' sizes: advertising them");
               for (auto& r : *registrars) r->Readvertise();
             }
           }},
      [&] { return service.CheckUpstreams(absl::Seconds(2)); });
  // Once before registering, so the first advertisement already says whether it can serve.
  monitor.CheckNow();
  upstream = &monitor;
  monitor.Start();
  auto started =
      loom::StartGrpcServer(absl::GetFlag(FLAGS_listen), {&service}, *server_credentials,
                            {loom::v1::Worker::service_full_name()});
  if (!started.ok()) return Fail(std::string(started.status().message()));
  const std::string advertised = absl::GetFlag(FLAGS_advertise_address).empty()
                                     ? started->address
                                     : absl::GetFlag(FLAGS_advertise_address);
  service.set_address(advertised);

  loom::ShutdownWaiter waiter;
  const std::vector<std::string> coordinators =
      absl::StrSplit(absl::GetFlag(FLAGS_coordinator), ',', absl::SkipWhitespace());
  if (coordinators.empty()) return Fail("--coordinator names no coordinator");
  // A refusal retrying cannot fix stops that coordinator's registrar; the worker stops when
  // every coordinator has refused it.
  std::atomic<int> refused{0};
  // What every coordinator is told: the same device, its models and its whole load (work
  // from all coordinators: the worker counts what it runs, whoever sent it).
  auto advertisement = [&] {
    loom::v1::DeviceInfo info = service.Info();
    loom::v1::RegisterRequest request;
    request.mutable_protocol_version()->set_major(loom::kProtocolMajor);
    request.mutable_protocol_version()->set_minor(loom::kProtocolMinor);
    request.set_device_id(info.device_id());
    request.set_provider_id(info.provider_id());
    request.set_address(info.address());
    *request.mutable_models() = info.models();
    request.set_simulated(info.simulated());
    request.set_region(config->region());
    if (config->has_carbon_g_per_kwh()) request.set_carbon_g_per_kwh(config->carbon_g_per_kwh());
    *request.mutable_load() = info.load();
    request.mutable_load()->set_upstream_problem(monitor.Problem());
    return request;
  };
  auto load = [&] {
    loom::v1::DeviceLoad l = service.Load();
    l.set_upstream_problem(monitor.Problem());
    return l;
  };
  std::vector<std::unique_ptr<loom::Registrar>> registrars;
  for (const std::string& coordinator : coordinators) {
    registrars.push_back(std::make_unique<loom::Registrar>(
        loom::RegistrarOptions{.coordinator = coordinator,
                               .credentials = *channel_credentials,
                               .join_token = config->join_token()},
        advertisement, load, [&, coordinator](absl::Status status) {
          spdlog::error("coordinator {} refused this device: {}", coordinator, status.ToString());
          if (++refused == static_cast<int>(coordinators.size())) waiter.RequestStop(3);
        }));
  }
  registrars_ptr = &registrars;
  for (auto& r : registrars) r->Start();

  const std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  if (!ready_file.empty()) {
    auto s = loom::WriteFileAtomically(
        ready_file, absl::StrCat("{\"grpc\": \"", started->address, "\", \"device_id\": \"",
                                 config->device_id(), "\", \"pid\": ", getpid(), "}\n"));
    if (!s.ok()) return Fail(std::string(s.message()));
  }
  spdlog::info("device {} (provider {}) serving {} model(s) on {}, coordinator {}",
               config->device_id(), config->provider_id(), config->models_size(),
               started->address, absl::StrJoin(coordinators, ", "));

  int code = waiter.Wait();
  monitor.Stop();  // before the registrar it may call
  registrars_ptr = nullptr;
  for (auto& r : registrars) r->Stop();
  loom::StopGrpcServer(started->server.get(), absl::Seconds(5));
  spdlog::info("stopped");
  return code;
}
