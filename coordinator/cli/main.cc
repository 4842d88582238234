// loom: the client CLI. Speaks the coordinator's gRPC Orchestrator API.
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "common/auto_model.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
#include "common/flags_usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "common/sse_parser.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "common/json_config.h"
#include "common/tls.h"
#include "common/tls_flags.h"
#include "coordinator/cli/loom_cli.h"
#include "loom/v1/orchestrator.grpc.pb.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:7070", "Coordinator gRPC address.");
ABSL_FLAG(std::string, http, "",
          "ask through the OpenAI-compatible HTTP API at this host:port instead of gRPC.");
ABSL_FLAG(bool, json, false, "Print the result as JSON (proto3 JSON mapping).");
ABSL_FLAG(std::string, model, "", "ask/plan: run on this model.");
ABSL_FLAG(std::string, family, "", "ask/plan: run on a model of this family.");
ABSL_FLAG(int64_t, max_tokens, 0, "ask: at most this many output tokens (0: coordinator default).");
ABSL_FLAG(std::string, api_key, "", "API key (default: $LOOM_API_KEY); requests are charged to its client.");
ABSL_FLAG(std::string, system, "", "ask/plan: a system prompt.");
ABSL_FLAG(std::string, mode, "", "ask/plan: force the plan: passthrough, compiled or compete.");
ABSL_FLAG(int64_t, timeout_ms, 120000, "Deadline of the call.");
ABSL_FLAG(std::string, policy, "", "ask/plan: a named policy (loom-fast, loom-cheap, loom-green, loom-private, ...).");
ABSL_FLAG(double, max_price_per_1k, 0, "ask/plan: only models at most this price, credits per 1,000 output tokens.");
ABSL_FLAG(double, max_cost, 0, "ask/plan: the request may cost at most this many credits.");
ABSL_FLAG(double, min_tokens_per_s, 0, "ask/plan: only devices reporting at least this speed.");
ABSL_FLAG(int64_t, max_ttft_ms, 0, "ask/plan: only devices whose measured time to first token is at most this.");
ABSL_FLAG(std::string, trust, "", "ask/plan: only devices of providers at least this trusted: community, verified, owned.");
ABSL_FLAG(std::vector<std::string>, regions, {}, "ask/plan: only devices in these regions.");
ABSL_FLAG(bool, private_only, false, "ask/plan: --trust and --regions bind only the parts that carry your own material.");
ABSL_FLAG(std::string, weights, "", "ask/plan: preferences, e.g. quality=1,cost=2 (quality, cost, latency, carbon).");
ABSL_FLAG(std::string, sub_task, "", "feedback: the sub-task the verdict is about (default: the whole answer).");

namespace {

constexpr char kUsage[] =
    "loom [--coordinator=HOST:PORT] [--tls_ca=CA --tls_cert=CRT --tls_key=KEY | --plaintext] "
    "COMMAND ...\n"
    "\n"
    "Commands:\n"
    "  ask \"PROMPT\"   run a request; streams the answer (--json: the whole result);\n"
    "                 --http=HOST:PORT goes through the OpenAI-compatible HTTP API\n"
    "                 [--model=NAME | --family=NAME] [--mode=passthrough|compiled|compete]\n"
    "                 [--max_tokens=N] [--system=TEXT] [--api_key=KEY | $LOOM_API_KEY]\n"
    "                 policy: [--policy=loom-fast|loom-cheap|loom-green|loom-private|...]\n"
    "                 [--max_price_per_1k=CREDITS] [--max_cost=CREDITS] [--min_tokens_per_s=N]\n"
    "                 [--max_ttft_ms=N] [--trust=community|verified|owned] [--regions=a,b]\n"
    "                 [--private_only] [--weights=quality=1,cost=2,latency=0,carbon=0]\n"
    "  plan \"PROMPT\"  show the plan the coordinator would follow, without running it\n"
    "  devices        the devices in the mesh with their models and load\n"
    "  feedback ID good|bad  rate the answer of your request ID (once); moves the affinities\n"
    "                 of the models that made it [--sub_task=ID: one part of it]\n"
    "  affinities     the selector's affinities: prior, observed outcomes, blended\n"
    "  earnings       a provider's own earnings, with a provider's key (--http=HOST:PORT\n"
    "                 --api_key=KEY; loom-ledger keys create --provider=ID makes one)\n"
    "\n"
    "Exit codes: 0 ok, 1 the request failed, 2 bad usage.";

int Usage(const std::string& message) {
  std::cerr << "loom: " << message << "\n";
  return 2;
}

int Failed(const grpc::Status& status) {
  std::cerr << "loom: " << loom::FromGrpcStatus(status).ToString() << "\n";
  return 1;
}

std::string ApiKey() {
  if (!absl::GetFlag(FLAGS_api_key).empty()) return absl::GetFlag(FLAGS_api_key);
  const char* env = std::getenv("LOOM_API_KEY");
  return env ? env : "";
}

std::unique_ptr<grpc::ClientContext> NewContext() {
  auto context = std::make_unique<grpc::ClientContext>();
  if (!ApiKey().empty()) context->AddMetadata("authorization", "Bearer " + ApiKey());
  context->set_deadline(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms))));
  return context;
}

// The policy the flags ask for, as HTTP's "loom.policy" object (the gRPC request takes the
// same through the one wire parser). Empty: none asked.
absl::StatusOr<nlohmann::json> PolicyJsonFromFlags() {
  nlohmann::json p = nlohmann::json::object();
  if (!absl::GetFlag(FLAGS_policy).empty()) p["name"] = absl::GetFlag(FLAGS_policy);
  if (absl::GetFlag(FLAGS_max_price_per_1k) > 0) p["max_price_per_1k"] = absl::GetFlag(FLAGS_max_price_per_1k);
  if (absl::GetFlag(FLAGS_max_cost) > 0) p["max_cost"] = absl::GetFlag(FLAGS_max_cost);
  if (absl::GetFlag(FLAGS_min_tokens_per_s) > 0) p["min_tokens_per_s"] = absl::GetFlag(FLAGS_min_tokens_per_s);
  if (absl::GetFlag(FLAGS_max_ttft_ms) > 0) p["max_ttft_ms"] = absl::GetFlag(FLAGS_max_ttft_ms);
  if (!absl::GetFlag(FLAGS_trust).empty()) p["trust"] = absl::GetFlag(FLAGS_trust);
  if (!absl::GetFlag(FLAGS_regions).empty()) p["regions"] = absl::GetFlag(FLAGS_regions);
  if (absl::GetFlag(FLAGS_private_only)) p["private_only"] = true;
  if (!absl::GetFlag(FLAGS_weights).empty()) {
    nlohmann::json w = nlohmann::json::object();
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_weights), ',', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
      double v = 0;
      if (!absl::SimpleAtod(kv.second, &v)) {
        return absl::InvalidArgumentError(absl::StrCat("--weights: '", part, "' is not NAME=NUMBER"));
      }
      w[kv.first] = v;
    }
    p["weights"] = w;
  }
  loom::v1::Policy check;
  if (absl::Status s = loom::ParsePolicy(p, &check); !s.ok()) return s;
  return p;
}

loom::v1::CompleteRequest BuildRequest(const std::string& prompt, const nlohmann::json& policy) {
  loom::v1::CompleteRequest request;
  if (!absl::GetFlag(FLAGS_system).empty()) {
    auto* m = request.add_messages();
    m->set_role("system");
    m->set_content(absl::GetFlag(FLAGS_system));
  }
  auto* m = request.add_messages();
  m->set_role("user");
  m->set_content(prompt);
  request.set_model(absl::GetFlag(FLAGS_model));
  request.set_family(absl::GetFlag(FLAGS_family));
  request.set_max_tokens(absl::GetFlag(FLAGS_max_tokens));
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "passthrough") request.set_mode(loom::v1::PLAN_KIND_PASSTHROUGH);
  if (mode == "compiled") request.set_mode(loom::v1::PLAN_KIND_COMPILED);
  if (mode == "compete") request.set_mode(loom::v1::PLAN_KIND_COMPETE);
  if (!policy.empty()) (void)loom::ParsePolicy(policy, request.mutable_policy());  // checked before
  return request;
}

int Ask(loom::v1::Orchestrator::Stub* stub, const std::string& prompt, const nlohmann::json& policy) {
  loom::v1::CompleteRequest request = BuildRequest(prompt, policy);
  auto context = NewContext();
  if (absl::GetFlag(FLAGS_json)) {
    loom::v1::CompleteResponse response;
    grpc::Status status = stub->Complete(context.get(), request, &response);
    if (!status.ok()) return Failed(status);
    std::cout << loom::ToJson(response) << "\n";
    return 0;
  }
  auto reader = stub->StreamComplete(context.get(), request);
  loom::v1::CompleteEvent event;
  loom::v1::CompleteResponse final_response;
  bool at_line_start = true;
  while (reader->Read(&event)) {
    switch (event.event_case()) {
      case loom::v1::CompleteEvent::kPlan:
        std::cerr << loom::FormatPlan(event.plan());
        break;
      case loom::v1::CompleteEvent::kSubTask:
        // Progress starts on a line of its own on the terminal; the newline goes to stderr so
        // that the answer on stdout stays exactly what the model wrote.
        if (!at_line_start) std::cerr << std::endl;
        at_line_start = true;
        std::cerr << loom::FormatEvent(event.sub_task());
        break;
      case loom::v1::CompleteEvent::kOutput:
        // Only the answer goes to stdout; sub-task text is progress.
        if (!event.output().answer()) break;
        std::cout << event.output().text() << std::flush;
        at_line_start = false;
        break;
      case loom::v1::CompleteEvent::kFinal:
        final_response = event.final();
        break;
      default:
        break;
    }
  }
  grpc::Status status = reader->Finish();
  if (!at_line_start) std::cout << std::endl;
  if (!status.ok()) return Failed(status);
  std::cerr << loom::FormatSummary(final_response);
  return 0;
}

// The message of an OpenAI error body, else the body itself.
std::string ErrorMessage(const std::string& body) {
  std::optional<loom::ChatChunk> parsed = loom::ParseChatChunk(body);
  return parsed && parsed->error ? *parsed->error : body;
}

// A client of the coordinator's HTTP API (--http), verifying its certificate unless
// --plaintext; null when TLS is asked for without --tls_ca.
std::unique_ptr<httplib::Client> HttpClient() {
  const loom::TlsConfig tls = loom::TlsFromFlags();
  auto client = std::make_unique<httplib::Client>(
      absl::StrCat(tls.plaintext ? "http://" : "https://", absl::GetFlag(FLAGS_http)));
  if (!tls.plaintext) {
    if (tls.ca.empty()) return nullptr;
    client->set_ca_cert_path(tls.ca);
    client->enable_server_certificate_verification(true);
  }
  client->set_read_timeout(std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
  return client;
}

// earnings over HTTP: GET /loom/v1/earnings with a provider's key.
int Earnings() {
  if (absl::GetFlag(FLAGS_http).empty()) return Usage("earnings needs --http=HOST:PORT");
  if (ApiKey().empty()) return Usage("earnings needs a provider's key: --api_key=KEY or $LOOM_API_KEY");
  std::unique_ptr<httplib::Client> http = HttpClient();
  if (!http) return Usage("--http over TLS needs --tls_ca (or --plaintext)");
  httplib::Client& client = *http;
  httplib::Result result = client.Get("/loom/v1/earnings", {{"Authorization", "Bearer " + ApiKey()}});
  if (!result) {
    std::cerr << "loom: cannot reach " << absl::GetFlag(FLAGS_http) << ": "
              << httplib::to_string(result.error()) << "\n";
    return 1;
  }
  if (result->status != 200) {
    std::cerr << "loom: HTTP " << result->status << ": " << ErrorMessage(result->body) << "\n";
    return 1;
  }
  const nlohmann::json e = nlohmann::json::parse(result->body, nullptr, false);
  if (absl::GetFlag(FLAGS_json) || !e.is_object()) {
    std::cout << result->body << "\n";
    return 0;
  }
  auto credits = [&](const char* field) {
    return absl::StrFormat("%.6f", static_cast<double>(e.value(field, int64_t{0})) / 1e6);
  };
  std::cout << "provider " << e.value("provider", "") << ": earned " << credits("earned_micro")
            << " credits for " << e.value("tokens", int64_t{0}) << " tokens in "
            << e.value("requests", int64_t{0}) << " requests on " << e.value("devices", int64_t{0})
            << " device(s); paid out " << credits("paid_out_micro") << ", unpaid "
            << credits("unpaid_micro") << "\n";
  return 0;
}

// ask over HTTP: POST /v1/chat/completions, streamed unless --json.
int AskHttp(const std::string& prompt, const nlohmann::json& policy) {
  const std::string model = absl::GetFlag(FLAGS_model);
  nlohmann::json body = {{"model", model.empty() ? loom::kAutoModel : model},
                         {"messages", nlohmann::json::array()}};
  if (!absl::GetFlag(FLAGS_system).empty()) {
    body["messages"].push_back({{"role", "system"}, {"content", absl::GetFlag(FLAGS_system)}});
  }
  body["messages"].push_back({{"role", "user"}, {"content", prompt}});
  if (absl::GetFlag(FLAGS_max_tokens) > 0) body["max_tokens"] = absl::GetFlag(FLAGS_max_tokens);
  if (!absl::GetFlag(FLAGS_mode).empty()) body["loom"]["mode"] = absl::GetFlag(FLAGS_mode);
  if (!policy.empty()) body["loom"]["policy"] = policy;
  const bool stream = !absl::GetFlag(FLAGS_json);
  body["stream"] = stream;
  std::unique_ptr<httplib::Client> http = HttpClient();
  if (!http) return Usage("--http over TLS needs --tls_ca (or --plaintext)");
  httplib::Client& client = *http;
  httplib::Headers headers;
  if (!ApiKey().empty()) headers.emplace("Authorization", "Bearer " + ApiKey());
  int status = 0;
  std::string error_body;
  loom::SseParser parser;
  bool at_line_start = true;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/chat/completions";
  req.headers = headers;
  req.set_header("Content-Type", "application/json");
  req.body = loom::DumpJson(body);
  req.response_handler = [&](const httplib::Response& r) {
    status = r.status;
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    if (status != 200 || !stream) {
      error_body.append(data, n);
      return true;
    }
    return parser.Feed(absl::string_view(data, n), [&](absl::string_view event) {
      if (event == "[DONE]") return true;
      // The one chunk parser (common/openai_wire): a null or absent delta content is no text.
      std::optional<loom::ChatChunk> parsed = loom::ParseChatChunk(event);
      if (!parsed) return true;
      if (parsed->error) {
        std::cerr << "loom: " << *parsed->error << "\n";
        return true;
      }
      if (!parsed->content.empty()) {
        std::cout << parsed->content << std::flush;
        at_line_start = false;
      }
      nlohmann::json chunk = nlohmann::json::parse(event, nullptr, false);
      if (chunk.contains("loom") && chunk["loom"].is_object()) std::cerr << "\nrequest " << chunk["loom"].value("request_id", "") << " cost " << chunk["loom"].value("cost_micro", 0) << " micro-credits\n";
      return true;
    }).ok();
  };
  httplib::Result result = client.send(req);
  if (!at_line_start) std::cout << std::endl;
  if (!result) {
    std::cerr << "loom: cannot reach " << absl::GetFlag(FLAGS_http) << ": "
              << httplib::to_string(result.error()) << "\n";
    return 1;
  }
  if (status != 200) {
    std::cerr << "loom: HTTP " << status << ": "
              << ErrorMessage(error_body) << "\n";
    return 1;
  }
  if (!stream) std::cout << error_body << "\n";
  return 0;
}

int Plan(loom::v1::Orchestrator::Stub* stub, const std::string& prompt, const nlohmann::json& policy) {
  loom::v1::CompilationPlan plan;
  auto context = NewContext();
  grpc::Status status = stub->Explain(context.get(), BuildRequest(prompt, policy), &plan);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(plan) + "\n" : loom::FormatPlan(plan));
  return 0;
}

int Devices(loom::v1::Orchestrator::Stub* stub) {
  loom::v1::ListDevicesResponse devices;
  auto context = NewContext();
  grpc::Status status = stub->ListDevices(context.get(), {}, &devices);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(devices) + "\n"
                                          : loom::FormatDevices(devices));
  return 0;
}

int Feedback(loom::v1::Orchestrator::Stub* stub, const std::string& id, const std::string& rating) {
  if (rating != "good" && rating != "bad") {
    return Usage(absl::StrCat("feedback: the rating must be good or bad, not '", rating, "'"));
  }
  loom::v1::FeedbackRequest request;
  request.set_request_id(id);
  request.set_rating(rating == "good" ? loom::v1::FEEDBACK_RATING_GOOD
                                      : loom::v1::FEEDBACK_RATING_BAD);
  request.set_sub_task_id(absl::GetFlag(FLAGS_sub_task));
  loom::v1::FeedbackResponse response;
  auto context = NewContext();
  grpc::Status status = stub->Feedback(context.get(), request, &response);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(response) + "\n"
                                          : loom::FormatFeedback(response, rating == "good"));
  return 0;
}

int Affinities(loom::v1::Orchestrator::Stub* stub) {
  loom::v1::ListAffinitiesResponse affinities;
  auto context = NewContext();
  grpc::Status status = stub->ListAffinities(context.get(), {}, &affinities);
  if (!status.ok()) return Failed(status);
  std::cout << (absl::GetFlag(FLAGS_json) ? loom::ToJson(affinities) + "\n"
                                          : loom::FormatAffinities(affinities));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loom::SetUsage(kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) return Usage("missing command (try --help)");
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (!mode.empty() && mode != "passthrough" && mode != "compiled" && mode != "compete") {
    return Usage("--mode must be passthrough, compiled or compete");
  }
  const std::string command = args[1];
  auto credentials = loom::ChannelCredentialsFor(loom::TlsFromFlags());
  if (!credentials.ok()) return Usage(std::string(credentials.status().message()));
  auto stub = loom::v1::Orchestrator::NewStub(
      grpc::CreateChannel(absl::GetFlag(FLAGS_coordinator), *credentials));
  if (command == "ask" || command == "plan") {
    if (args.size() < 3) return Usage(absl::StrCat(command, ": missing the prompt"));
    std::string prompt = absl::StrJoin(args.begin() + 2, args.end(), " ");
    absl::StatusOr<nlohmann::json> policy = PolicyJsonFromFlags();
    if (!policy.ok()) return Usage(std::string(policy.status().message()));
    if (command == "ask" && !absl::GetFlag(FLAGS_http).empty()) return AskHttp(prompt, *policy);
    return command == "ask" ? Ask(stub.get(), prompt, *policy) : Plan(stub.get(), prompt, *policy);
  }
  if (command == "devices") {
    if (args.size() > 2) return Usage(absl::StrCat("devices: unexpected argument '", args[2], "'"));
    return Devices(stub.get());
  }
  if (command == "feedback") {
    if (args.size() != 4) return Usage("feedback: expected REQUEST_ID good|bad");
    return Feedback(stub.get(), args[2], args[3]);
  }
  if (command == "affinities") {
    if (args.size() > 2) return Usage(absl::StrCat("affinities: unexpected argument '", args[2], "'"));
    return Affinities(stub.get());
  }
  if (command == "earnings") {
    if (args.size() > 2) return Usage(absl::StrCat("earnings: unexpected argument '", args[2], "'"));
    return Earnings();
  }
  return Usage(absl::StrCat("unknown command '", command, "' (try --help)"));
}
