// File: coordinator/http_front_door.h
// The OpenAI-compatible HTTP API (cpp-httplib), a thin adapter over RequestRunner:
//   POST /v1/chat/completions   model "loom-auto" (the analyzer decides) or a mesh model
//                               (passthrough); "stream": true answers in Server-Sent Events
//                               ending with "data: [DONE]" (stream_options.include_usage adds
//                               a usage chunk); a "loom" object may force the plan kind
//                               ({"mode": "compiled"}); responses carry usage, a "loom" object
//                               (plan kind, sub-tasks, contributions, cost) and the header
//                               X-Loom-Overhead-Ms.
//   GET  /v1/models             the mesh's models plus loom-auto
//   GET  /healthz               200 while serving
//   GET  /metrics               Prometheus text
// Errors use OpenAI's error JSON: 400 malformed, 401 key, 402 credits, 404 model, 413 body too
// large, 429 busy, 503 no device, 504 deadline.
//
// Thread-safe; requests run on the server's threads (blocking there is fine).
#ifndef LOOM_COORDINATOR_HTTP_FRONT_DOOR_H_
#define LOOM_COORDINATOR_HTTP_FRONT_DOOR_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "coordinator/authenticator.h"
#include "coordinator/metrics.h"
#include "coordinator/registry.h"
#include "coordinator/request_runner.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}

namespace loom {

struct HttpOptions {
  size_t max_body_bytes = 1 << 20;                       // larger bodies get 413
  absl::Duration request_timeout = absl::Seconds(300);  // deadline of each request
  // Connections served at once, each on its own thread; more wait for one to close.
  int max_connections = 1024;
  // An idle keep-alive connection is closed after this (SDK agents reuse theirs within it).
  absl::Duration keep_alive_timeout = absl::Seconds(15);
  int keep_alive_max_requests = 10000;                    // requests on one connection
  absl::Duration read_timeout = absl::Seconds(10);       // a client silent this long is dropped
  // Fields no device honours yet (tools, response_format json, n > 1, ...) are dropped and
  // named in x-loom-dropped-params instead of refused with 400 (LiteLLM's drop_params).
  bool drop_params = false;
  std::string tls_cert;  // PEM files; both set: serve HTTPS
  std::string tls_key;
};

// Parses an OpenAI chat completion request body into a CompleteRequest (messages, max_tokens,
// sampling, model as a pin or loom-auto, loom.mode), with stream and
// stream_options.include_usage. INVALID_ARGUMENT naming the field for anything malformed, and
// for fields no device honours yet (tools, response_format json, n > 1, logprobs, ...) unless
// `drop_unsupported`, when their names go to `dropped`. Exposed for tests and fuzzing.
absl::Status ParseChatRequest(const std::string& body, v1::CompleteRequest* out, bool* stream,
                              bool* include_usage, std::string* model,
                              bool drop_unsupported = false,
                              std::vector<std::string>* dropped = nullptr);

class HttpFrontDoor {
 public:
  HttpFrontDoor(HttpOptions options, RequestRunner* runner, DeviceRegistry* registry,
                const Authenticator* auth, const Metrics* metrics);
  ~HttpFrontDoor();

  // Binds `listen` ("host:port", port 0 = any) and serves on a thread; returns "host:port".
  // INVALID_ARGUMENT when the TLS certificate or key cannot be loaded.
  absl::StatusOr<std::string> Start(const std::string& listen);
  void Stop();

  // The one converter from a Status to an HTTP status code.
  static int HttpStatusFor(const absl::Status& status);

 private:
  void Routes();
  void Chat(const httplib::Request& req, httplib::Response& res);

  const HttpOptions options_;
  RequestRunner* const runner_;
  DeviceRegistry* const registry_;
  const Authenticator* const auth_;
  const Metrics* const metrics_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace loom

#endif  // LOOM_COORDINATOR_HTTP_FRONT_DOOR_H_
