// File: coordinator/front/http_front_door.h
// The OpenAI-compatible HTTP API, a thin adapter over RequestRunner on HttpServer (Beast):
//   POST /v1/chat/completions   model "loom-auto" (the analyzer decides) or a mesh model
//                               (passthrough); "stream": true answers in Server-Sent Events
//                               ending with "data: [DONE]" (stream_options.include_usage adds
//                               a usage chunk); a "loom" object may force the plan kind
//                               ({"mode": "compiled"}); responses carry usage, a "loom" object
//                               (plan kind, sub-tasks, contributions, cost) and the header
//                               X-Loom-Overhead-Ms.
//   POST /v1/responses          the Responses API's stateless text subset, streamed or not
//                               (responses_api.h)
//   POST /v1/completions        legacy text completions: the prompt as one user message;
//                               "text_completion" objects, streamed or not
//   GET  /v1/models             the mesh's models plus loom-auto
//   GET  /loom/v1/earnings      with a provider's key: that provider's earnings (earned,
//                               tokens, requests, devices, paid out, unpaid)
//   GET  /console/              the web console (console_api.h: its JSON under /console/api/)
//   GET  /healthz               200 while serving
//   GET  /metrics               Prometheus text
// Errors use OpenAI's error JSON: 400 malformed, 401 key, 402 credits, 404 model, 413 body too
// large, 429 busy, 503 no device, 504 deadline.
//
// When the client goes away (it closes the connection, streamed or not), the request is
// cancelled at once and settled for the output produced until then (RequestRunner's rule).
//
// Thread-safe; requests run on the server's handler threads (blocking there is fine); probes
// and scrapes on its I/O threads.
#ifndef LOOM_COORDINATOR_FRONT_HTTP_FRONT_DOOR_H_
#define LOOM_COORDINATOR_FRONT_HTTP_FRONT_DOOR_H_

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/front/admission.h"
#include "coordinator/front/authenticator.h"
#include "coordinator/front/console_api.h"
#include "coordinator/front/http_server.h"
#include "coordinator/front/openai_codec.h"
#include "coordinator/pipeline/metrics.h"
#include "coordinator/mesh/registry.h"
#include "coordinator/pipeline/embedding_runner.h"
#include "coordinator/pipeline/request_runner.h"
#include "coordinator/front/responses_api.h"

namespace loom {

struct HttpOptions {
  size_t max_body_bytes = 1 << 20;                       // larger bodies get 413
  absl::Duration request_timeout = absl::Seconds(300);  // deadline of each request
  // Connections open at once, and from one address; more are closed at once.
  int max_connections = 4096;
  int max_connections_per_peer = 512;
  // An idle keep-alive connection is closed after this (SDK agents reuse theirs within it).
  absl::Duration keep_alive_timeout = absl::Seconds(15);
  int keep_alive_max_requests = 10000;                    // requests on one connection
  // A request's head and body must arrive within this of its first byte.
  absl::Duration read_timeout = absl::Seconds(10);
  absl::Duration write_timeout = absl::Seconds(30);      // a client not reading is dropped
  // Fields no device honours yet (tools, response_format json, n > 1, ...) are dropped and
  // named in x-loom-dropped-params instead of refused with 400 (LiteLLM's drop_params).
  bool drop_params = false;
  // Browser origins allowed to call the API (CORS): exact origins, or "*" for any. Empty: no
  // CORS headers, and preflights are refused like any unknown method.
  std::vector<std::string> cors_origins;
  // /metrics answers only a request with an API key (Prometheus: authorization.credentials).
  bool metrics_require_key = false;
  std::string tls_cert;  // PEM files; both set: serve HTTPS
  std::string tls_key;
};

class HttpFrontDoor {
 public:
  // `admission` is shared with the gRPC door (every request is admitted by it after its key is
  // checked: 429 with Retry-After when the client is past its limit or share).
  // `embeddings` serves POST /v1/embeddings (null: the route answers 404); `console` the web
  // console under /console/ (null: 404).
  HttpFrontDoor(HttpOptions options, RequestRunner* runner, DeviceRegistry* registry,
                const Authenticator* auth, Admission* admission, Metrics* metrics,
                EmbeddingRunner* embeddings = nullptr, const ConsoleApi* console = nullptr);
  ~HttpFrontDoor();

  // Binds `listen` ("host:port", port 0 = any) and serves on a thread; returns "host:port".
  // INVALID_ARGUMENT when the TLS certificate or key cannot be loaded.
  absl::StatusOr<std::string> Start(const std::string& listen);
  void Stop();

  // The one converter from a Status to an HTTP status code (openai_codec.h).
  static int HttpStatusFor(const absl::Status& status) { return http_codec::HttpStatusFor(status); }

 private:
  // A head filter that names the request's principal by `who` (a client's or a provider's
  // key) or refuses it, before the body is read.
  HttpHeadFilter Authenticating(
      absl::StatusOr<std::string> (Authenticator::*who)(const std::string&) const) const;
  void Routes();
  void ConsoleRoutes();                                  // console_routes.cc
  void LoomRoutes(const HttpHeadFilter& authenticate);   // loom_routes.cc: feedback, earnings
  HttpResponse Models(HttpExchange& exchange);
  HttpResponse Chat(HttpExchange& exchange);
  HttpResponse Responses(HttpExchange& exchange);  // /v1/responses (responses_api.h)
  HttpResponse Completions(HttpExchange& exchange);  // /v1/completions (legacy text)
  HttpResponse Embeddings(HttpExchange& exchange);   // /v1/embeddings (embeddings_api.h)
  HttpResponse Feedback(HttpExchange& exchange);     // /v1/feedback (feedback.h)
  // Who pays and under which id: the head filter's client, the loom/X-Request-Id/
  // Idempotency-Key id (validated) or a new one; names it in `res`.
  absl::Status Identify(const HttpRequest& req, v1::CompleteRequest* request, HttpResponse* res) const;
  // Every request's way in after its body is parsed: named (Identify, and the dropped
  // fields listed in a header), then admitted (Admission: 429 past the client's share).
  // `refused` set: send it instead. The ticket holds the slot until the response is built.
  struct Admitted {
    HttpResponse res;  // the headers so far, to build the response on
    absl::Time deadline;
    int64_t created = 0;  // the response's "created", in Unix seconds
    Cancellation* cancel = nullptr;
    std::optional<Admission::Ticket> ticket;
    std::optional<HttpResponse> refused;
  };
  // A chat or legacy completions request as its codec parsed it.
  struct Completion {
    v1::CompleteRequest request;
    bool stream = false, include_usage = false;
    std::string model;
    std::vector<std::string> dropped;
  };
  Admitted Admit(HttpExchange& exchange, v1::CompleteRequest* request,
                 const std::vector<std::string>& dropped);
  // With --drop_params: tools or response_format that no model on the mesh honours are
  // dropped (and named) instead of refused.
  void DropUnservedStructure(v1::CompleteRequest* request, std::vector<std::string>* dropped) const;

  const HttpOptions options_;
  RequestRunner* const runner_;
  DeviceRegistry* const registry_;
  const Authenticator* const auth_;
  Admission* const admission_;
  Metrics* const metrics_;
  EmbeddingRunner* const embeddings_;
  const ConsoleApi* const console_;
  ResponseItemCache response_items_;  // for item_reference in /v1/responses
  HttpServer server_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_FRONT_HTTP_FRONT_DOOR_H_
