#include "coordinator/http_front_door.h"

#include <httplib.h>

#include <deque>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/categories.h"
#include "common/ids.h"
#include "nlohmann/json.hpp"

namespace loom {
namespace {

using json = nlohmann::json;

constexpr char kAutoModel[] = "loom-auto";

const char* ErrorType(int http) {
  switch (http) {
    case 400: case 404: case 409: case 413: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "insufficient_quota";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

void SendError(httplib::Response& res, int http, const std::string& message) {
  res.status = http;
  res.set_content(json{{"error", {{"message", message}, {"type", ErrorType(http)},
                                  {"code", http}}}}.dump(),
                  "application/json");
}

void SendError(httplib::Response& res, const absl::Status& status) {
  SendError(res, HttpFrontDoor::HttpStatusFor(status), std::string(status.message()));
}

}  // namespace

// Parses an OpenAI chat completion request into a CompleteRequest.
absl::Status ParseChatRequest(const std::string& body, v1::CompleteRequest* out, bool* stream,
                              bool* include_usage, std::string* model) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return absl::InvalidArgumentError("the body is not a JSON object");
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required: loom-auto or a model on the mesh");
  }
  *model = j["model"].get<std::string>();
  if (*model != kAutoModel) out->set_model(*model);
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    return absl::InvalidArgumentError("'messages' must be a non-empty array");
  }
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is required"));
    }
    std::string content;
    if (m.contains("content") && m["content"].is_string()) {
      content = m["content"].get<std::string>();
    } else if (m.contains("content") && m["content"].is_array()) {
      // The "parts" form: keep the text parts.
      for (const json& part : m["content"]) {
        if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
            part["text"].is_string()) {
          content += part["text"].get<std::string>();
        }
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].content must be text"));
    }
    v1::ChatMessage* msg = out->add_messages();
    msg->set_role(m["role"].get<std::string>());
    msg->set_content(content);
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (j.contains(key)) {
      if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
        return absl::InvalidArgumentError(absl::StrCat("'", key, "' must be a non-negative integer"));
      }
      out->set_max_tokens(j[key].get<int64_t>());
    }
  }
  *stream = j.contains("stream") && j["stream"].is_boolean() && j["stream"].get<bool>();
  *include_usage = j.contains("stream_options") && j["stream_options"].is_object() &&
                   j["stream_options"].value("include_usage", false);
  if (j.contains("loom")) {
    const json& l = j["loom"];
    if (!l.is_object()) return absl::InvalidArgumentError("'loom' must be an object");
    const std::string mode = l.value("mode", "");
    if (mode == "passthrough") {
      out->set_mode(v1::PLAN_KIND_PASSTHROUGH);
    } else if (mode == "compiled") {
      out->set_mode(v1::PLAN_KIND_COMPILED);
    } else if (mode == "compete") {
      out->set_mode(v1::PLAN_KIND_COMPETE);
    } else if (!mode.empty()) {
      return absl::InvalidArgumentError("loom.mode must be passthrough, compiled or compete");
    }
    if (l.contains("request_id") && l["request_id"].is_string()) {
      out->set_request_id(l["request_id"].get<std::string>());
    }
  }
  return absl::OkStatus();
}

namespace {

std::string Lower(const std::string& enum_name, absl::string_view prefix) {
  return absl::AsciiStrToLower(absl::StripPrefix(enum_name, prefix));
}

json LoomObject(const v1::CompleteResponse& r) {
  json sub_tasks = json::array();
  for (const auto& t : r.plan().sub_tasks()) {
    json deps = json::array();
    for (const auto& d : t.depends_on()) deps.push_back(d);
    std::string device;
    for (const auto& res : r.results()) {
      if (res.sub_task_id() == t.id()) device = res.device_id();
    }
    sub_tasks.push_back({{"id", t.id()}, {"category", CategoryName(t.category())},
                         {"order_index", t.order_index()}, {"depends_on", deps}, {"device", device}});
  }
  json contributions = json::array();
  for (const auto& c : r.contributions()) {
    contributions.push_back({{"device", c.device_id()}, {"provider", c.provider_id()},
                             {"model", c.model()}, {"role", Lower(v1::ContributionRole_Name(c.role()), "CONTRIBUTION_ROLE_")},
                             {"tokens", c.token_count()}, {"weight", c.weight()},
                             {"credits_micro", c.credits_micro()}});
  }
  json out = {{"request_id", r.request_id()},
              {"plan_kind", Lower(v1::PlanKind_Name(r.plan().kind()), "PLAN_KIND_")},
              {"sub_tasks", sub_tasks},
              {"contributions", contributions},
              {"cost_micro", r.cost_micro()},
              {"settlement_id", r.settlement_id()},
              {"coordinator_overhead_us", r.coordinator_overhead_us()}};
  if (r.has_compete()) {
    out["compete"] = {{"winner", r.compete().winner_sub_task_id()}, {"method", r.compete().method()},
                      {"reason", r.compete().reason()}};
  }
  return out;
}

json Usage(const v1::CompleteResponse& r) {
  return {{"prompt_tokens", r.usage().prompt_tokens()},
          {"completion_tokens", r.usage().completion_tokens()},
          {"total_tokens", r.usage().prompt_tokens() + r.usage().completion_tokens()}};
}

// What a streamed request shares between the thread running it and the HTTP writer. Owned
// by the handler and the writer; the last owner cancels the request (if still running) and
// joins its thread, so no request outlives the response it belongs to.
struct StreamState {
  ~StreamState() {
    cancel.Cancel();
    if (worker.joinable()) worker.join();
  }
  std::thread worker;
  absl::Mutex mu;
  std::deque<std::string> pieces ABSL_GUARDED_BY(mu);  // answer text not yet written
  bool done ABSL_GUARDED_BY(mu) = false;
  bool output_started ABSL_GUARDED_BY(mu) = false;
  absl::StatusOr<v1::CompleteResponse> result ABSL_GUARDED_BY(mu) = absl::UnknownError("running");
  Cancellation cancel;
};

}  // namespace

int HttpFrontDoor::HttpStatusFor(const absl::Status& status) {
  if (IsInsufficientCredits(status)) return 402;
  switch (status.code()) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists: return 409;
    case absl::StatusCode::kFailedPrecondition: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

HttpFrontDoor::HttpFrontDoor(HttpOptions options, RequestRunner* runner,
                             DeviceRegistry* registry, const Authenticator* auth,
                             const Metrics* metrics)
    : options_(options),
      runner_(runner),
      registry_(registry),
      auth_(auth),
      metrics_(metrics),
      server_(options_.tls_cert.empty()
                  ? std::make_unique<httplib::Server>()
                  : std::make_unique<httplib::SSLServer>(options_.tls_cert.c_str(),
                                                         options_.tls_key.c_str())) {
  Routes();
}

HttpFrontDoor::~HttpFrontDoor() { Stop(); }

absl::StatusOr<std::string> HttpFrontDoor::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port)) {
    return absl::InvalidArgumentError(absl::StrCat("--http_listen '", listen, "' needs host:port"));
  }
  const std::string host = listen.substr(0, colon);
  if (!server_->is_valid()) {
    return absl::InvalidArgumentError(absl::StrCat("HTTPS: cannot load ", options_.tls_cert, " / ",
                                                   options_.tls_key));
  }
  if (port == 0) {
    port = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) return absl::UnavailableError(absl::StrCat("cannot listen on ", listen));
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return absl::StrCat(host, ":", port);
}

void HttpFrontDoor::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

void HttpFrontDoor::Routes() {
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(json{{"status", "ok"}, {"devices", registry_->Size()}}.dump(),
                    "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(registry_->Snapshot()), "text/plain; version=0.0.4");
  });
  server_->Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    absl::StatusOr<std::string> client = auth_->ClientFor(req.get_header_value("Authorization"));
    if (!client.ok()) return SendError(res, client.status());
    std::map<std::string, std::set<std::string>> models;  // name -> devices
    std::map<std::string, std::string> family;
    for (const auto& d : registry_->Snapshot()) {
      if (d.state() != v1::DEVICE_STATE_HEALTHY) continue;
      for (const auto& m : d.models()) {
        models[m.name()].insert(d.device_id());
        family[m.name()] = m.family();
      }
    }
    json data = json::array();
    data.push_back({{"id", kAutoModel}, {"object", "model"}, {"owned_by", "loom"},
                    {"loom", {{"description", "the analyzer decides: passthrough, compiled or compete"}}}});
    for (const auto& [name, devices] : models) {
      data.push_back({{"id", name}, {"object", "model"}, {"owned_by", "loom-mesh"},
                      {"loom", {{"family", family[name]}, {"devices", devices.size()}}}});
    }
    res.set_content(json{{"object", "list"}, {"data", data}}.dump(), "application/json");
  });
  server_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    const absl::Time arrived = runner_->clock()->Now();  // parsing counts as overhead too
    absl::StatusOr<std::string> client = auth_->ClientFor(req.get_header_value("Authorization"));
    if (!client.ok()) return SendError(res, client.status());
    v1::CompleteRequest request;
    bool stream = false, include_usage = false;
    std::string model;
    if (absl::Status s = ParseChatRequest(req.body, &request, &stream, &include_usage, &model); !s.ok()) {
      return SendError(res, s);
    }
    request.set_client_id(*client);
    if (request.request_id().empty()) request.set_request_id(NewUuid());
    const absl::Time deadline = absl::Now() + options_.request_timeout;
    const int64_t created = absl::ToUnixSeconds(absl::Now());

    if (!stream) {
      Cancellation cancel;
      absl::StatusOr<v1::CompleteResponse> r = runner_->Run(request, deadline, nullptr, &cancel, arrived);
      if (!r.ok()) return SendError(res, r.status());
      json out = {{"id", absl::StrCat("chatcmpl-", r->request_id())},
                  {"object", "chat.completion"},
                  {"created", created},
                  {"model", model},
                  {"choices", {{{"index", 0},
                                {"message", {{"role", "assistant"}, {"content", r->output()}}},
                                {"finish_reason", "stop"}}}},
                  {"usage", Usage(*r)},
                  {"loom", LoomObject(*r)}};
      res.set_header("X-Loom-Overhead-Ms",
                     absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
      res.set_header("X-Loom-Request-Id", r->request_id());
      res.set_content(out.dump(), "application/json");
      return;
    }

    // Streaming: run on a thread; answer text is queued for the writer below. Until the first
    // text arrives nothing is sent, so a request that fails early still gets its HTTP status.
    auto state = std::make_shared<StreamState>();
    StreamState* raw = state.get();  // the thread is joined before the state goes away
    state->worker = std::thread([this, raw, request, deadline, arrived] {
      StreamState* state = raw;
      absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
          request, deadline,
          [state](const v1::CompleteEvent& e) {
            if (!e.has_output() || !e.output().answer()) return;
            absl::MutexLock lock(&state->mu);
            state->pieces.push_back(e.output().text());
            state->output_started = true;
          },
          &state->cancel, arrived);
      absl::MutexLock lock(&state->mu);
      state->result = std::move(r);
      state->done = true;
    });
    {
      absl::MutexLock lock(&state->mu);
      state->mu.Await(absl::Condition(
          +[](StreamState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->done || s->output_started; },
          state.get()));
      if (state->done && !state->result.ok() && !state->output_started) {
        return SendError(res, state->result.status());
      }
    }
    const std::string id = absl::StrCat("chatcmpl-", request.request_id());
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [state, id, created, model, include_usage](size_t, httplib::DataSink& sink) {
          auto send = [&](const json& chunk) {
            const std::string event = absl::StrCat("data: ", chunk.dump(), "\n\n");
            return sink.write(event.data(), event.size());
          };
          auto chunk = [&](const json& delta, const json& finish) {
            return json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created},
                        {"model", model},
                        {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
          };
          if (!send(chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) {
            state->cancel.Cancel();
            return false;
          }
          while (true) {
            std::deque<std::string> pieces;
            bool done;
            {
              absl::MutexLock lock(&state->mu);
              state->mu.Await(absl::Condition(
                  +[](StreamState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
                    return s->done || !s->pieces.empty();
                  },
                  state.get()));
              pieces.swap(state->pieces);
              done = state->done;
            }
            for (const std::string& p : pieces) {
              if (!send(chunk({{"content", p}}, nullptr))) {
                state->cancel.Cancel();  // the client went away
                return false;
              }
            }
            if (done) break;
          }
          absl::StatusOr<v1::CompleteResponse> result = absl::UnknownError("");
          {
            absl::MutexLock lock(&state->mu);
            result = state->result;
          }
          if (!result.ok()) {
            // Text was already sent: report the failure in-band, as OpenAI-compatible servers do.
            send({{"error", {{"message", std::string(result.status().message())},
                             {"type", ErrorType(HttpStatusFor(result.status()))},
                             {"code", HttpStatusFor(result.status())}}}});
          } else {
            json last = chunk(json::object(), "stop");
            last["loom"] = LoomObject(*result);
            send(last);
            if (include_usage) {
              send({{"id", id}, {"object", "chat.completion.chunk"}, {"created", created},
                    {"model", model}, {"choices", json::array()}, {"usage", Usage(*result)}});
            }
          }
          const std::string done_event = "data: [DONE]\n\n";
          sink.write(done_event.data(), done_event.size());
          sink.done();
          return true;
        });
  });
  // Bodies over the limit never reach the handlers.
  server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 413) return SendError(res, 413, "request body too large");
    if (res.status == 404 && res.body.empty()) return SendError(res, 404, "no such endpoint");
  });
}

}  // namespace loom
