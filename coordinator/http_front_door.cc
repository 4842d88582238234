#include "coordinator/http_front_door.h"

#include <httplib.h>

#include <deque>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/http_connections.h"
#include "common/json_dump.h"
#include "common/openai_wire.h"
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
    case 403: return "permission_error";
    case 429: return "rate_limit_error";
    default: return "server_error";
  }
}

// OpenAI's error `code` is a string (or null); SDKs switch on it.
const char* ErrorCode(int http) {
  switch (http) {
    case 400: return "invalid_request";
    case 401: return "invalid_api_key";
    case 402: return "insufficient_quota";
    case 403: return "permission_denied";
    case 404: return "not_found";
    case 409: return "request_already_served";
    case 413: return "request_too_large";
    case 429: return "rate_limit_exceeded";
    case 499: return "cancelled";
    case 503: return "no_device_available";
    case 504: return "timeout";
    default: return "internal_error";
  }
}

json ErrorBody(int http, const std::string& message) {
  return json{{"error", {{"message", message}, {"type", ErrorType(http)},
                         {"param", nullptr}, {"code", ErrorCode(http)}}}};
}

void SendError(httplib::Response& res, int http, const std::string& message) {
  res.status = http;
  // OpenAI SDKs retry 409 and 5xx unless told not to: a request that was already served or
  // that can never succeed as sent must not be retried (nor charged) again.
  if (http == 409 || (http >= 400 && http < 500 && http != 429 && http != 408)) {
    res.set_header("x-should-retry", "false");
  }
  if (http == 429) res.set_header("Retry-After", "1");
  res.set_content(DumpJson(ErrorBody(http, message)), "application/json");
}

void SendError(httplib::Response& res, const absl::Status& status) {
  SendError(res, HttpFrontDoor::HttpStatusFor(status), std::string(status.message()));
}

// A client's own id for the request: X-Request-Id, else Idempotency-Key (what the OpenAI SDKs
// and Stripe-style clients send so that a retry can be recognised). Empty when neither is set.
std::string ClientRequestId(const httplib::Request& req) {
  for (const char* header : {"X-Request-Id", "Idempotency-Key"}) {
    if (req.has_header(header)) return req.get_header_value(header);
  }
  return "";
}

}  // namespace

namespace {

// OpenAI request fields that Loom's devices cannot honour yet, each with whether this request
// uses it in a way that is honoured anyway (n: 1, response_format text, logprobs false, ...).
std::vector<std::pair<std::string, bool>> UnsupportedFields(const json& j) {
  std::vector<std::pair<std::string, bool>> out;
  auto present = [&](const char* field) { return j.contains(field) && !j[field].is_null(); };
  if (present("n")) out.emplace_back("n", j["n"].is_number_integer() && j["n"].get<int64_t>() == 1);
  for (const char* field : {"tools", "functions"}) {
    if (present(field)) out.emplace_back(field, j[field].is_array() && j[field].empty());
  }
  for (const char* field : {"tool_choice", "function_call"}) {
    if (present(field)) out.emplace_back(field, j[field] == "none");
  }
  if (present("response_format")) {
    const json& f = j["response_format"];
    out.emplace_back("response_format", f.is_object() && f.contains("type") && f["type"] == "text");
  }
  if (present("logprobs")) out.emplace_back("logprobs", j["logprobs"] == false);
  if (present("top_logprobs")) out.emplace_back("top_logprobs", j["top_logprobs"] == 0);
  if (present("logit_bias")) {
    out.emplace_back("logit_bias", j["logit_bias"].is_object() && j["logit_bias"].empty());
  }
  if (present("modalities")) {
    out.emplace_back("modalities", j["modalities"] == json::array({"text"}));
  }
  for (const char* field : {"audio", "prediction"}) {
    if (present(field)) out.emplace_back(field, false);
  }
  return out;
}

}  // namespace

// Parses an OpenAI chat completion request into a CompleteRequest. Every field is checked
// for its type (a wrong type is a 400 naming the field, never an exception).
absl::Status ParseChatRequest(const std::string& body, v1::CompleteRequest* out, bool* stream,
                              bool* include_usage, std::string* model, bool drop_unsupported,
                              std::vector<std::string>* dropped) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("the body is not a JSON object (or not valid UTF-8)");
  }
  auto bad = [](absl::string_view field, absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("'", field, "' must be ", what));
  };
  if (!j.contains("model") || !j["model"].is_string() || j["model"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("'model' is required: loom-auto or a model on the mesh");
  }
  *model = j["model"].get<std::string>();
  if (*model != kAutoModel) out->set_model(*model);
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty()) {
    return bad("messages", "a non-empty array");
  }
  for (size_t i = 0; i < j["messages"].size(); ++i) {
    const json& m = j["messages"][i];
    const std::string at = absl::StrCat("messages[", i, "]");
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
      return bad(absl::StrCat(at, ".role"), "a string");
    }
    std::string content;
    if (m.contains("content") && m["content"].is_string()) {
      content = m["content"].get<std::string>();
    } else if (m.contains("content") && m["content"].is_array()) {
      // The "parts" form: text parts are joined; any other part is refused by name, since
      // dropping it would answer a different question than the one asked.
      for (size_t k = 0; k < m["content"].size(); ++k) {
        const json& part = m["content"][k];
        const std::string part_at = absl::StrCat(at, ".content[", k, "]");
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
          return bad(absl::StrCat(part_at, ".type"), "a string");
        }
        const std::string type = part["type"].get<std::string>();
        if (type != "text") {
          return absl::InvalidArgumentError(absl::StrCat(
              part_at, " is a '", type, "' part; no device on this mesh takes those (text only)"));
        }
        if (!part.contains("text") || !part["text"].is_string()) {
          return bad(absl::StrCat(part_at, ".text"), "a string");
        }
        content += part["text"].get<std::string>();
      }
    } else {
      return bad(absl::StrCat(at, ".content"), "a string or an array of text parts");
    }
    v1::ChatMessage* msg = out->add_messages();
    msg->set_role(m["role"].get<std::string>());
    msg->set_content(content);
  }
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (j.contains(key) && !j[key].is_null()) {
      if (!j[key].is_number_integer() || j[key].get<int64_t>() < 0) {
        return bad(key, "a non-negative integer");
      }
      out->set_max_tokens(j[key].get<int64_t>());
    }
  }
  *stream = false;
  if (j.contains("stream") && !j["stream"].is_null()) {
    if (!j["stream"].is_boolean()) return bad("stream", "true or false");
    *stream = j["stream"].get<bool>();
  }
  *include_usage = false;
  if (j.contains("stream_options") && !j["stream_options"].is_null()) {
    const json& o = j["stream_options"];
    if (!o.is_object()) return bad("stream_options", "an object");
    if (o.contains("include_usage")) {
      if (!o["include_usage"].is_boolean()) return bad("stream_options.include_usage", "true or false");
      *include_usage = o["include_usage"].get<bool>();
    }
  }
  if (absl::Status s = ParseSampling(j, out->mutable_sampling()); !s.ok()) return s;
  // Fields whose loss would change the answer: refused by name (or, with --drop_params,
  // dropped and listed in x-loom-dropped-params), never dropped silently.
  for (const auto& [field, honoured] : UnsupportedFields(j)) {
    if (honoured) continue;
    if (!drop_unsupported) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", field, "' is not supported by the devices on this mesh yet; remove it, or ask "
          "the operator to start the coordinator with --drop_params to have it ignored"));
    }
    if (dropped) dropped->push_back(field);
  }
  if (j.contains("loom")) {
    const json& l = j["loom"];
    if (!l.is_object()) return bad("loom", "an object");
    std::string mode;
    if (l.contains("mode")) {
      if (!l["mode"].is_string()) return bad("loom.mode", "passthrough, compiled or compete");
      mode = l["mode"].get<std::string>();
    }
    if (mode == "passthrough") {
      out->set_mode(v1::PLAN_KIND_PASSTHROUGH);
    } else if (mode == "compiled") {
      out->set_mode(v1::PLAN_KIND_COMPILED);
    } else if (mode == "compete") {
      out->set_mode(v1::PLAN_KIND_COMPETE);
    } else if (!mode.empty()) {
      return bad("loom.mode", "passthrough, compiled or compete");
    }
    if (l.contains("request_id")) {
      if (!l["request_id"].is_string()) return bad("loom.request_id", "a string");
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

std::string FinishReason(const v1::CompleteResponse& r) {
  return r.finish_reason().empty() ? "stop" : r.finish_reason();
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

// Writes a streamed response as Server-Sent Events: a role chunk, the answer's text as it
// arrives, then a final chunk (with the loom object), an optional usage chunk and [DONE]; a
// failure after text was sent is reported in-band. Returns false when the client went away
// (the request is then cancelled).
bool WriteStream(StreamState& state, const std::string& id, int64_t created,
                 const std::string& model, bool include_usage, httplib::DataSink& sink) {
  auto send = [&](const json& chunk) {
    const std::string event = absl::StrCat("data: ", DumpJson(chunk), "\n\n");
    return sink.write(event.data(), event.size());
  };
  auto chunk = [&](const json& delta, const json& finish) {
    return json{{"id", id}, {"object", "chat.completion.chunk"}, {"created", created},
                {"model", model},
                {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
  };
  if (!send(chunk({{"role", "assistant"}, {"content", ""}}, nullptr))) {
    state.cancel.Cancel();
    return false;
  }
  while (true) {
    std::deque<std::string> pieces;
    bool done;
    {
      absl::MutexLock lock(&state.mu);
      state.mu.Await(absl::Condition(
          +[](StreamState* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
            return s->done || !s->pieces.empty();
          },
          &state));
      pieces.swap(state.pieces);
      done = state.done;
    }
    for (const std::string& p : pieces) {
      if (!send(chunk({{"content", p}}, nullptr))) {
        state.cancel.Cancel();  // the client went away
        return false;
      }
    }
    if (done) break;
  }
  absl::StatusOr<v1::CompleteResponse> result = absl::UnknownError("");
  {
    absl::MutexLock lock(&state.mu);
    result = state.result;
  }
  if (!result.ok()) {
    // Text was already sent: report the failure in-band, as OpenAI-compatible servers do.
    const int http = HttpFrontDoor::HttpStatusFor(result.status());
    send(ErrorBody(http, std::string(result.status().message())));
  } else {
    json last = chunk(json::object(), FinishReason(*result));
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
}

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
  // Every request after the first on a keep-alive connection otherwise waits ~40 ms for the
  // client's delayed ACK (Nagle): the accepted sockets inherit this from the listener.
  server_->set_tcp_nodelay(true);
  const int max_connections = options_.max_connections;
  server_->new_task_queue = [max_connections] { return new ConnectionQueue(max_connections); };
  server_->set_keep_alive_max_count(options_.keep_alive_max_requests);
  server_->set_keep_alive_timeout(absl::ToInt64Seconds(options_.keep_alive_timeout));
  server_->set_read_timeout(absl::ToChronoSeconds(options_.read_timeout));
  // Every response names its request, so a client can quote it; a client's own id is echoed.
  server_->set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.has_header("x-request-id")) {
      const std::string id = ClientRequestId(req);
      res.set_header("x-request-id", ValidRequestId(id).ok() && !id.empty() ? id : NewUuid());
    }
  });
  // A handler that throws answers OpenAI error JSON, never the exception's text in a header.
  server_->set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                    std::exception_ptr error) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("HTTP handler failed: {}", what);
    SendError(res, 500, "internal error while handling the request");
  });
  server_->Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(DumpJson(json{{"status", "ok"}, {"devices", registry_->Size()}}),
                    "application/json");
  });
  server_->Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_->Render(registry_->Snapshot()), "text/plain; version=0.0.4");
  });
  server_->Get(R"(/v1/models(?:/(.+))?)", [this](const httplib::Request& req, httplib::Response& res) {
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
    std::vector<json> data;
    data.push_back({{"id", kAutoModel}, {"object", "model"}, {"created", 0}, {"owned_by", "loom"},
                    {"loom", {{"description", "the analyzer decides: passthrough, compiled or compete"}}}});
    for (const auto& [name, devices] : models) {
      data.push_back({{"id", name}, {"object", "model"}, {"created", 0}, {"owned_by", "loom-mesh"},
                      {"loom", {{"family", family[name]}, {"devices", devices.size()}}}});
    }
    const std::string wanted = req.matches.size() > 1 ? req.matches[1].str() : "";
    if (wanted.empty()) {
      res.set_content(DumpJson(json{{"object", "list"}, {"data", data}}), "application/json");
      return;
    }
    for (const json& m : data) {
      if (m["id"] == wanted) return res.set_content(DumpJson(m), "application/json");
    }
    SendError(res, 404, absl::StrCat("the model '", wanted, "' is not served on this mesh now"));
  });
  server_->Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    Chat(req, res);
  });
  // Bodies over the limit never reach the handlers.
  server_->set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 413) return SendError(res, 413, "request body too large");
    if (res.status == 404 && res.body.empty()) return SendError(res, 404, "no such endpoint");
  });
}

void HttpFrontDoor::Chat(const httplib::Request& req, httplib::Response& res) {
  const absl::Time arrived = runner_->clock()->Now();  // parsing counts as overhead too
  absl::StatusOr<std::string> client = auth_->ClientFor(req.get_header_value("Authorization"));
  if (!client.ok()) return SendError(res, client.status());
  v1::CompleteRequest request;
  bool stream = false, include_usage = false;
  std::string model;
  std::vector<std::string> dropped;
  if (absl::Status s = ParseChatRequest(req.body, &request, &stream, &include_usage, &model,
                                        options_.drop_params, &dropped);
      !s.ok()) {
    return SendError(res, s);
  }
  if (!dropped.empty()) res.set_header("x-loom-dropped-params", absl::StrJoin(dropped, ","));
  request.set_client_id(*client);
  if (request.request_id().empty()) request.set_request_id(ClientRequestId(req));
  if (absl::Status s = ValidRequestId(request.request_id()); !s.ok()) return SendError(res, s);
  if (request.request_id().empty()) request.set_request_id(NewUuid());
  res.set_header("x-request-id", request.request_id());
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
                              {"logprobs", nullptr},
                              {"finish_reason", FinishReason(*r)}}}},
                {"usage", Usage(*r)},
                {"loom", LoomObject(*r)}};
    res.set_header("X-Loom-Overhead-Ms",
                   absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
    res.set_header("X-Loom-Request-Id", r->request_id());
    res.set_content(DumpJson(out), "application/json");
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
        // Nothing may escape a content provider (httplib does not catch there: the process
        // would end). The client sees an in-band error and the request is cancelled.
        try {
          return WriteStream(*state, id, created, model, include_usage, sink);
        } catch (const std::exception& e) {
          spdlog::error("stream {}: {}", id, e.what());
          state->cancel.Cancel();
          return false;
        }
      });
}

}  // namespace loom
