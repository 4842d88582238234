#include "coordinator/front/http_front_door.h"

#include <algorithm>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "common/json_dump.h"
#include "common/status_macros.h"
#include "common/openai_wire.h"
#include "common/categories.h"
#include "common/ids.h"
#include "coordinator/front/console_assets.h"
#include "coordinator/front/embeddings_api.h"
#include "coordinator/front/responses_api.h"
#include "coordinator/front/sse_stream.h"
#include "nlohmann/json.hpp"

namespace loom {

using http_codec::AssistantMessage;
using http_codec::Choices;
using http_codec::ErrorBody;
using http_codec::ErrorCode;
using http_codec::ErrorResponse;
using http_codec::FinishReason;
using http_codec::JsonResponse;
using http_codec::Logprobs;
using http_codec::LoomObject;
using http_codec::ServerTiming;
using http_codec::Usage;
using json = nlohmann::json;

namespace {

// CORS for browser clients: an allowed Origin is echoed (or "*" when any is allowed), with the
// headers a page may read; a preflight (OPTIONS with Access-Control-Request-Method) also gets
// the methods and the request headers it asked for (SDKs send their own x-stainless-* ones).
void AddCorsHeaders(const std::vector<std::string>& allowed, const HttpRequest& req,
                    HttpResponse& res) {
  const std::string origin = req.Header("Origin");
  if (allowed.empty() || origin.empty()) return;
  const bool any = std::find(allowed.begin(), allowed.end(), "*") != allowed.end();
  if (!any && std::find(allowed.begin(), allowed.end(), origin) == allowed.end()) return;
  res.SetHeader("Access-Control-Allow-Origin", any ? "*" : origin);
  if (!any) res.SetHeader("Vary", "Origin");
  res.SetHeader("Access-Control-Expose-Headers",
                "x-request-id, x-loom-overhead-ms, x-loom-request-id, x-loom-dropped-params, "
                "x-should-retry, retry-after");
  if (req.method == "OPTIONS") {
    res.SetHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const std::string asked = req.Header("Access-Control-Request-Headers");
    res.SetHeader("Access-Control-Allow-Headers",
                  asked.empty() ? "Authorization, Content-Type, X-Request-Id, Idempotency-Key" : asked);
    res.SetHeader("Access-Control-Max-Age", "600");
  }
}

// The route a request went to, as a metric label (raw paths would be unbounded).
std::string Endpoint(const HttpRequest& req) {
  if (req.method == "OPTIONS") return "preflight";
  for (const char* route : {"/v1/chat/completions", "/v1/responses", "/v1/completions",
                            "/v1/embeddings", "/v1/feedback", "/loom/v1/earnings",
                            "/loom/v1/affinities", "/healthz", "/metrics"}) {
    if (req.path == route) return route;
  }
  if (req.path == "/v1/models" || absl::StartsWith(req.path, "/v1/models/")) return "/v1/models";
  return "other";
}

// A client's own id for the request: X-Request-Id, else Idempotency-Key (what the OpenAI SDKs
// and Stripe-style clients send so that a retry can be recognised). Empty when neither is set.
std::string ClientRequestId(const HttpRequest& req) {
  for (const char* header : {"X-Request-Id", "Idempotency-Key"}) {
    if (req.HasHeader(header)) return req.Header(header);
  }
  return "";
}

}  // namespace

namespace {

HttpServerOptions ServerOptions(const HttpOptions& o) {
  HttpServerOptions s;
  s.max_connections = o.max_connections;
  s.max_connections_per_peer = o.max_connections_per_peer;
  s.keep_alive_timeout = o.keep_alive_timeout;
  s.keep_alive_max_requests = o.keep_alive_max_requests;
  s.request_read_timeout = o.read_timeout;
  s.write_timeout = o.write_timeout;
  s.max_body_bytes = o.max_body_bytes;
  s.tls_cert = o.tls_cert;
  s.tls_key = o.tls_key;
  return s;
}

}  // namespace

HttpFrontDoor::HttpFrontDoor(HttpOptions options, RequestRunner* runner,
                             DeviceRegistry* registry, const Authenticator* auth,
                             Admission* admission, Metrics* metrics,
                             EmbeddingRunner* embeddings, const ConsoleApi* console)
    : options_(options),
      runner_(runner),
      registry_(registry),
      auth_(auth),
      admission_(admission),
      metrics_(metrics),
      embeddings_(embeddings),
      console_(console),
      server_(ServerOptions(options_),
              [](int status, const std::string& message) { return ErrorResponse(status, message); },
              // Every response names its request, so a client can quote it; a client's own
              // id is echoed. Allowed browser origins get CORS headers.
              [this](const HttpRequest& req, HttpResponse& res) {
                AddCorsHeaders(options_.cors_origins, req, res);
                if (metrics_) metrics_->RecordHttpResponse(Endpoint(req), res.status);
                if (res.HasHeader("x-request-id")) return;
                const std::string id = ClientRequestId(req);
                res.SetHeader("x-request-id",
                              ValidRequestId(id).ok() && !id.empty() ? id : NewUuid());
              }) {
  Routes();
}

HttpFrontDoor::~HttpFrontDoor() { Stop(); }

absl::StatusOr<std::string> HttpFrontDoor::Start(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--http_listen '", listen, "' needs host:port"));
  }
  const std::string host = listen.substr(0, colon);
  LOOM_ASSIGN_OR_RETURN(const int bound, server_.Start(host, port));
  return absl::StrCat(host, ":", bound);
}

void HttpFrontDoor::Stop() { server_.Stop(); }

HttpHeadFilter HttpFrontDoor::Authenticating(
    absl::StatusOr<std::string> (Authenticator::*who)(const std::string&) const) const {
  return [this, who](HttpRequest& req) -> std::optional<HttpResponse> {
    absl::StatusOr<std::string> principal = (auth_->*who)(req.Header("Authorization"));
    if (!principal.ok()) return ErrorResponse(principal.status());
    req.principal = *std::move(principal);
    return std::nullopt;
  };
}

void HttpFrontDoor::Routes() {
  server_.Handle(
      "GET", "/healthz",
      [this](HttpExchange&) {
        return JsonResponse(json{{"status", "ok"}, {"devices", registry_->Size()}});
      },
      {.on_io_thread = true});
  // The key is checked from the head, before a body is read (a body needs memory).
  const HttpHeadFilter authenticate = Authenticating(&Authenticator::ClientFor);
  if (!options_.cors_origins.empty()) {
    // Preflights carry no key: answered for any path, on the I/O threads; the finisher adds
    // the CORS headers when the origin is allowed (else the browser refuses the call).
    server_.Handle(
        "OPTIONS", "/*",
        [](HttpExchange&) {
          HttpResponse res;
          res.status = 204;
          res.content_type = "text/plain";
          return res;
        },
        {.on_io_thread = true});
  }
  server_.Handle("GET", "/metrics",
                 [this](HttpExchange&) {
                   HttpResponse res;
                   res.content_type = "text/plain; version=0.0.4";
                   const v1::ListAffinitiesResponse affinities = runner_->Affinities();
                   res.body = metrics_->Render(registry_->Snapshot(), admission_->running(),
                                               admission_->waiting(), &affinities);
                   return res;
                 },
                 {.on_io_thread = true,
                  .head_filter = options_.metrics_require_key ? authenticate : HttpHeadFilter()});
  // The model list copies the registry (O(devices)) for any client that asks, as often as it
  // asks: on a handler thread, so a large mesh never stalls the I/O threads' probes.
  auto models = [this](HttpExchange& ex) { return Models(ex); };
  server_.Handle("GET", "/v1/models", models, {.head_filter = authenticate});
  server_.Handle("GET", "/v1/models/*", models, {.head_filter = authenticate});
  server_.Handle("POST", "/v1/chat/completions", [this](HttpExchange& ex) { return Chat(ex); },
                 {.head_filter = authenticate});
  server_.Handle("POST", "/v1/responses", [this](HttpExchange& ex) { return Responses(ex); },
                 {.head_filter = authenticate});
  server_.Handle("POST", "/v1/completions", [this](HttpExchange& ex) { return Completions(ex); },
                 {.head_filter = authenticate});
  if (embeddings_ != nullptr) {
    server_.Handle("POST", "/v1/embeddings", [this](HttpExchange& ex) { return Embeddings(ex); },
                   {.head_filter = authenticate});
  }
  if (console_ != nullptr) ConsoleRoutes();
  LoomRoutes(authenticate);
}


absl::Status HttpFrontDoor::Identify(const HttpRequest& req, v1::CompleteRequest* request,
                                     HttpResponse* res) const {
  request->set_client_id(req.principal);
  if (request->request_id().empty()) request->set_request_id(ClientRequestId(req));
  LOOM_RETURN_IF_ERROR(ValidRequestId(request->request_id()));
  if (request->request_id().empty()) {
    request->set_request_id(NewUuid());
    request->set_request_id_assigned(true);
  }
  res->SetHeader("x-request-id", request->request_id());
  return absl::OkStatus();
}

HttpFrontDoor::Admitted HttpFrontDoor::Admit(HttpExchange& exchange, v1::CompleteRequest* request,
                                             const std::vector<std::string>& dropped) {
  Admitted a;
  if (!dropped.empty()) a.res.SetHeader("x-loom-dropped-params", absl::StrJoin(dropped, ","));
  if (absl::Status s = Identify(exchange.request(), request, &a.res); !s.ok()) {
    a.refused = ErrorResponse(s);
    return a;
  }
  a.deadline = runner_->clock()->Now() + options_.request_timeout;
  a.created = absl::ToUnixSeconds(absl::Now());
  // The client leaving (the server sees the connection close) cancels the request.
  a.cancel = exchange.client_gone();
  absl::StatusOr<Admission::Ticket> ticket =
      admission_->Acquire(request->client_id(), a.deadline, a.cancel);
  if (!ticket.ok()) {
    a.refused = ErrorResponse(std::move(a.res), ticket.status());
    return a;
  }
  a.ticket.emplace(*std::move(ticket));
  return a;
}

HttpResponse HttpFrontDoor::Responses(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();
  ResponsesRequest parsed;
  const ItemResolver resolve = [&](const std::string& item_id) {
    return response_items_.Get(req.principal, item_id, runner_->clock()->Now());
  };
  if (absl::Status s = ParseResponsesRequest(req.body, options_.drop_params, &parsed, resolve);
      !s.ok()) {
    return ErrorResponse(s);
  }
  v1::CompleteRequest& request = parsed.request;
  Admitted admitted = Admit(exchange, &request, parsed.dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const std::string id = absl::StrCat("resp_", request.request_id());

  if (!parsed.stream) {
    absl::StatusOr<v1::CompleteResponse> r =
        runner_->Run(request, admitted.deadline, nullptr, admitted.cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = ResponseJson(id, admitted.created, parsed.model,
                            FinishReason(*r) == "length" ? "incomplete" : "completed", r->output(),
                            r->usage().prompt_tokens(), r->usage().completion_tokens(),
                            r->tool_calls_json());
    response_items_.Put(req.principal, out, runner_->clock()->Now());
    out["loom"] = LoomObject(*r);
    res.SetHeader("X-Loom-Overhead-Ms",
                  absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
    if (r->has_timings()) res.SetHeader("Server-Timing", ServerTiming(r->timings()));
    res.body = DumpJson(out);
    return res;
  }

  ResponsesStream events(id, admitted.created, parsed.model);
  LazyEventStream stream(&exchange, res);
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, admitted.deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_output() && e.output().answer()) {
          stream.Send(events.Delta(e.output().text()), events.Start());
        }
      },
      admitted.cancel, arrived);
  if (!r.ok() && !stream.started()) return ErrorResponse(std::move(res), r.status());
  if (!r.ok()) {
    stream.Send(events.Fail(ErrorCode(HttpStatusFor(r.status())), std::string(r.status().message())),
                events.Start());
  } else {
    stream.Send(events.Finish(FinishReason(*r), r->usage().prompt_tokens(),
                              r->usage().completion_tokens(), LoomObject(*r), r->tool_calls_json()),
                events.Start());
    response_items_.Put(req.principal, events.completed(), runner_->clock()->Now());
  }
  return HttpResponse{};
}

HttpResponse HttpFrontDoor::Chat(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();  // parsing counts as overhead too
  Completion call;
  if (absl::Status s = ParseChatRequest(req.body, &call.request, &call.stream, &call.include_usage,
                                        &call.model, options_.drop_params, &call.dropped);
      !s.ok()) {
    return ErrorResponse(s);
  }
  if (options_.drop_params) DropUnservedStructure(&call.request, &call.dropped);
  Admitted admitted = Admit(exchange, &call.request, call.dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  // References, not a structured binding: clang 14 cannot capture one in a lambda.
  v1::CompleteRequest& request = call.request;
  const bool stream = call.stream, include_usage = call.include_usage;
  const std::string& model = call.model;
  HttpResponse& res = admitted.res;

  if (!stream) {
    absl::StatusOr<v1::CompleteResponse> r =
        runner_->Run(request, admitted.deadline, nullptr, admitted.cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = {{"id", absl::StrCat("chatcmpl-", r->request_id())},
                {"object", "chat.completion"},
                {"created", admitted.created},
                {"model", model},
                {"choices", json::array()},
                {"usage", Usage(*r)},
                {"loom", LoomObject(*r)}};
    const std::vector<v1::Choice> choices = Choices(*r);
    for (size_t i = 0; i < choices.size(); ++i) {
      out["choices"].push_back({{"index", i},
                                {"message", AssistantMessage(choices[i].output(), choices[i].tool_calls_json())},
                                {"logprobs", Logprobs(choices[i])},
                                {"finish_reason", choices[i].finish_reason().empty() ? "stop" : choices[i].finish_reason()}});
    }
    res.SetHeader("X-Loom-Overhead-Ms",
                  absl::StrFormat("%.3f", r->coordinator_overhead_us() / 1000.0));
    if (r->has_timings()) res.SetHeader("Server-Timing", ServerTiming(r->timings()));
    res.SetHeader("X-Loom-Request-Id", r->request_id());
    if (r->replayed()) res.SetHeader("Idempotent-Replayed", "true");
    res.body = DumpJson(out);
    return res;
  }

  // Streamed: the request runs on this thread and its answer text is written to the client
  // as the devices produce it (the runner calls the sink one event at a time).
  SseWriter writer(&exchange, res, absl::StrCat("chatcmpl-", request.request_id()),
                   admitted.created, model, std::max(1, request.n()));
  // With n > 1 each choice's text carries its passthrough's sub-task id, in the plan's order.
  std::map<std::string, int> choice_of;
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, admitted.deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_plan()) {
          for (int i = 0; i < e.plan().sub_tasks_size(); ++i)
            choice_of[e.plan().sub_tasks(i).id()] = i;
        }
        if (e.has_output() && e.output().answer()) {
          auto it = choice_of.find(e.output().sub_task_id());
          writer.Text(e.output().text(), request.n() > 1 && it != choice_of.end() ? it->second : 0);
        }
      },
      admitted.cancel, arrived);
  if (!r.ok() && !writer.started()) return ErrorResponse(std::move(res), r.status());
  writer.Finish(r, include_usage);
  return HttpResponse{};
}

HttpResponse HttpFrontDoor::Embeddings(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  EmbeddingsCall call;
  if (absl::Status s = ParseEmbeddingsRequest(req.body, &call); !s.ok()) return ErrorResponse(s);
  v1::CompleteRequest who;  // the same identity, id and admission rules as completions
  Admitted admitted = Admit(exchange, &who, {});
  if (admitted.refused) return *std::move(admitted.refused);
  HttpResponse& res = admitted.res;
  const std::string account = ClientAccount(who.client_id());
  if (metrics_) metrics_->RecordModel(call.model);
  absl::StatusOr<EmbeddingResult> r = embeddings_->Run(
      {.client_account = account,
       .request_id = who.request_id_assigned() ? who.request_id()
                                               : ScopedRequestId(account, who.request_id()),
       .model = call.model,
       .input = call.input,
       .dimensions = call.dimensions,
       .deadline = admitted.deadline},
      admitted.cancel);
  if (!r.ok()) return ErrorResponse(std::move(res), r.status());
  json out = EmbeddingsJson(call, r->response, r->tokens);
  out["loom"] = {{"request_id", who.request_id()}, {"cost_micro", r->cost_micro},
                 {"device_id", r->device_id}, {"attempts", r->attempts}};
  res.body = DumpJson(out);
  return res;
}

HttpResponse HttpFrontDoor::Completions(HttpExchange& exchange) {
  const HttpRequest& req = exchange.request();
  const absl::Time arrived = runner_->clock()->Now();
  Completion call;
  if (absl::Status s =
          ParseCompletionRequest(req.body, &call.request, &call.stream, &call.include_usage,
                                 &call.model, options_.drop_params, &call.dropped);
      !s.ok()) {
    return ErrorResponse(s);
  }
  Admitted admitted = Admit(exchange, &call.request, call.dropped);
  if (admitted.refused) return *std::move(admitted.refused);
  // References, not a structured binding: clang 14 cannot capture one in a lambda.
  v1::CompleteRequest& request = call.request;
  const bool stream = call.stream, include_usage = call.include_usage;
  const std::string& model = call.model;
  HttpResponse& res = admitted.res;
  const std::string id = absl::StrCat("cmpl-", request.request_id());
  auto choice = [](const std::string& text, const json& finish) {
    return json::array({{{"text", text}, {"index", 0}, {"logprobs", nullptr},
                         {"finish_reason", finish}}});
  };
  auto object = [&](json choices) {
    return json{{"id", id},
                {"object", "text_completion"},
                {"created", admitted.created},
                {"model", model},
                {"choices", std::move(choices)}};
  };

  if (!stream) {
    absl::StatusOr<v1::CompleteResponse> r =
        runner_->Run(request, admitted.deadline, nullptr, admitted.cancel, arrived);
    if (!r.ok()) return ErrorResponse(std::move(res), r.status());
    json out = object(choice(r->output(), FinishReason(*r)));
    out["usage"] = Usage(*r);
    out["loom"] = LoomObject(*r);
    if (r->replayed()) res.SetHeader("Idempotent-Replayed", "true");
    res.body = DumpJson(out);
    return res;
  }

  LazyEventStream events(&exchange, res);
  auto send = [&events](const json& chunk) {
    return events.Send(absl::StrCat("data: ", DumpJson(chunk), "\n\n"));
  };
  absl::StatusOr<v1::CompleteResponse> r = runner_->Run(
      request, admitted.deadline,
      [&](const v1::CompleteEvent& e) {
        if (e.has_output() && e.output().answer()) send(object(choice(e.output().text(), nullptr)));
      },
      admitted.cancel, arrived);
  if (!r.ok() && !events.started()) return ErrorResponse(std::move(res), r.status());
  bool ok;
  if (!r.ok()) {
    ok = send(ErrorBody(HttpStatusFor(r.status()), std::string(r.status().message())));
  } else {
    json last = object(choice("", FinishReason(*r)));
    if (include_usage) last["usage"] = Usage(*r);
    last["loom"] = LoomObject(*r);
    ok = send(last);
  }
  if (ok) events.Send("data: [DONE]\n\n");
  return HttpResponse{};
}

}  // namespace loom
